package chanperm

import (
	"context"
	"testing"

	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/internal/enginetest"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// run runs m in the engine at batch 2 on fixed inputs.
func run(t *testing.T, m *onnxpb.ModelProto) map[string]*engine.Tensor {
	t.Helper()
	return enginetest.Run(t, m, 2, 5)
}

func relErr(a, b []float32) float64 { return enginetest.RelL2(a, b) }

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
