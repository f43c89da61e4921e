package chanperm

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

func fill(shape []int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	n := 1
	for _, d := range shape {
		n *= d
	}
	x := make([]float32, n)
	for i := range x {
		x[i] = r.Float32()*2 - 1
	}
	return x
}

// run runs m in the engine at batch 2 on fixed inputs.
func run(t *testing.T, m *onnxpb.ModelProto) map[string]*engine.Tensor {
	t.Helper()
	_, shapes := testutil.GraphInputs(m, 2)
	in := map[string]*engine.Tensor{}
	for name, s := range shapes {
		in[name] = engine.NewTensorF(fill(s, 5), s...)
	}
	p, err := engine.Compile(m, engine.Options{InputShapes: shapes, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func relErr(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / max(den, 1e-30))
}

func TestPermuteFixtures(t *testing.T) {
	for _, name := range []string{"mobilenetv1", "mobilenetv1_bn", "mobilenetv1_op9", "shufflenetv2", "shufflenetv2_bn", "shufflenetv2_op9"} {
		t.Run(name, func(t *testing.T) {
			m, err := onnxio.Load(testutil.Fixture(t, name+".onnx"))
			if err != nil {
				t.Fatal(err)
			}
			p, rep, err := Permute(context.Background(), m, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Groups == 0 {
				t.Fatal("nothing relabeled")
			}
			want, got := run(t, m), run(t, p)
			for k, w := range want {
				if e := relErr(got[k].F, w.F); e > 1e-5 {
					t.Errorf("output %s: relative error %g", k, e)
				}
			}
			var negB, negA, relabeled int
			var shB, shA float64
			for _, l := range rep.Layers {
				negB += l.NegativeBefore
				negA += l.NegativeAfter
				shB += l.DiagShareBefore
				shA += l.DiagShareAfter
				if l.Relabeled {
					relabeled++
				}
			}
			t.Logf("%d groups, %d of %d layers relabeled; negative diagonal entries %d -> %d; mean diagonal share %.3f -> %.3f",
				rep.Groups, relabeled, len(rep.Layers), negB, negA, shB/float64(len(rep.Layers)), shA/float64(len(rep.Layers)))
			if negA*4 > negB || shA < 1.5*shB {
				t.Errorf("diagonal not improved: negative %d -> %d, share %.3f -> %.3f", negB, negA, shB, shA)
			}
		})
	}
}
