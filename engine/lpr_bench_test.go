package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// lprResiduals are the residual kinds the LPR tests and benchmarks cover.
var lprResiduals = []string{"none", "identity", "diag", "dw3"}

// lprFixture loads testdata/models/<file> and, unless residual is "", rewrites
// it into an LPR model at rank ratio 1/4 with that residual (what
// `lprconv compress --residual <residual>` writes before fine-tuning).
func lprFixture(tb testing.TB, file, residual string) *onnxpb.ModelProto {
	tb.Helper()
	m, err := onnxio.Load(filepath.Join("..", "testdata", "models", file))
	if err != nil {
		testutil.Skipf(tb, "fixture absent: %v", err)
	}
	if residual == "" {
		return m
	}
	kind, err := svd.ParseResidual(residual)
	if err != nil {
		tb.Fatal(err)
	}
	plan, err := convert.NewPlan(context.Background(), m, svd.Policy{Ratio: 0.25}, kind, convert.PlanOptions{})
	if err != nil {
		tb.Fatalf("plan %s %s: %v", file, residual, err)
	}
	out, err := convert.Apply(m, plan)
	if err != nil {
		tb.Fatalf("apply %s %s: %v", file, residual, err)
	}
	return out
}

// BenchmarkLPR runs the MobileNetV1 and ShuffleNetV2 fixtures and their LPR
// rewrites (each residual kind, rank C/4) at batch 64 and 1, so that the
// time of an LPR model can be read next to its original's.
func BenchmarkLPR(b *testing.B) {
	for _, file := range []string{"mobilenetv1.onnx", "shufflenetv2.onnx"} {
		for _, res := range append([]string{""}, lprResiduals...) {
			m := lprFixture(b, file, res)
			name := res
			if name == "" {
				name = "original"
			}
			for _, batch := range []int{64, 1} {
				b.Run(file[:len(file)-5]+"/"+name+"/batch"+strconv.Itoa(batch), func(b *testing.B) {
					benchModel(b, m, []int{batch, 3, 32, 32})
				})
			}
		}
	}
}

// BenchmarkPointwiseSmallPlane compares the per-image and the batched
// (Chunk) paths of a group-1 pointwise convolution on small planes, one
// thread, as in the LPR factors of the 32x32 fixtures.
func BenchmarkPointwiseSmallPlane(b *testing.B) {
	for _, tc := range []struct{ n, c, m, hw int }{{64, 128, 128, 2}, {64, 32, 128, 2}, {64, 128, 32, 2}, {64, 24, 96, 2}, {64, 96, 24, 2}, {64, 12, 48, 4}, {64, 48, 12, 4}, {64, 64, 64, 4}, {64, 6, 24, 8}, {64, 32, 32, 8}} {
		g := newGraph(13)
		x := g.input("x", tc.n, tc.c, tc.hw, tc.hw)
		y := g.node("Conv", []string{x, g.weight(0.1, tc.m, tc.c, 1, 1), g.weight(0.1, tc.m)})
		g.output(y)
		m := g.model()
		for _, batched := range []bool{false, true} {
			name := fmt.Sprintf("%dx%dx%d/hw%d/batched=%v", tc.n, tc.c, tc.m, tc.hw*tc.hw, batched)
			b.Run(name, func(b *testing.B) {
				p, err := Compile(m, Options{Threads: 1})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				conv := p.steps[0].Op.(*ConvOp)
				if !batched {
					conv.Chunk = 0
				} else {
					conv.Chunk = tc.n
				}
				in := map[string]*Tensor{"x": randTensor(rand.New(rand.NewPCG(1, 2)), tc.n, tc.c, tc.hw, tc.hw)}
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				t0 := threadCPU()
				for b.Loop() {
					if err := p.Forward(in); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(threadCPU()-t0)/1e3/float64(b.N), "cpu-us/op")
			})
		}
	}
}
