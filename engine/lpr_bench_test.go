package engine

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/lprconv/lprconv/convert"
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
		tb.Skipf("fixture absent: %v", err)
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
