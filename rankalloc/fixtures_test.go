package rankalloc

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// fixturePre is the fixtures' preprocessing (testdata/models/fixtures.json).
var fixturePre = dataset.Preprocess{Channels: 3, Height: 32, Width: 32, Fit: dataset.FitPad, Mean: []float32{0.286}, Std: []float32{0.353}}

func loadFixture(t testing.TB, name string) *onnxpb.ModelProto {
	t.Helper()
	m, err := onnxio.Load(testutil.Fixture(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// images returns a loader in batches of batch over n images of
// testdata/images/<split> (all when n is 0; a seeded random choice
// otherwise).
func images(t testing.TB, split string, n, batch int) *dataset.Loader {
	t.Helper()
	src, err := dataset.Open(filepath.Join(testutil.RepoRoot(t), "testdata", "images", split), dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	idx := dataset.Indices(src.Len())
	if n > 0 {
		idx = dataset.Random(idx, n, 7)
	}
	l, err := dataset.NewLoader(src, idx, fixturePre, dataset.LoaderOptions{BatchSize: batch, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func plan(t testing.TB, m *onnxpb.ModelProto, p svd.Policy) *convert.Plan {
	t.Helper()
	return planWith(t, m, p, convert.Selection{})
}

// planWith plans m with the rank rule p and the selection sel.
func planWith(t testing.TB, m *onnxpb.ModelProto, p svd.Policy, sel convert.Selection) *convert.Plan {
	t.Helper()
	pl, err := convert.NewPlan(context.Background(), m, p, svd.KindDiag, convert.PlanOptions{SVD: svd.Options{Seed: 1}, Select: sel})
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

func apply(t testing.TB, m *onnxpb.ModelProto, p *convert.Plan) *onnxpb.ModelProto {
	t.Helper()
	out, err := convert.Apply(m, p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBudgetBeatsUniformRatio compresses each fixture at rank ratio 1/4
// (ranks rounded to multiples of 16, diag residual), then with the
// allocator at the same parameter fraction, and compares top-1 accuracy
// on the 500 test images without fine-tuning: the allocation must keep at
// most as many parameters and be at least as accurate (ties allowed).
func TestBudgetBeatsUniformRatio(t *testing.T) {
	for _, name := range []string{"mobilenetv1.onnx", "shufflenetv2.onnx"} {
		t.Run(name, func(t *testing.T) {
			m := loadFixture(t, name)
			uniform := plan(t, m, svd.Policy{Ratio: 0.25, Multiple: 16})
			frac := float64(uniform.ParamsAfter) / float64(uniform.ParamsBefore)
			results := map[string]*evaluate.Result{}
			for _, metric := range []string{MetricKL, MetricWeights} {
				opts := Options{Multiple: 16, Residual: svd.KindDiag, Plan: convert.PlanOptions{SVD: svd.Options{Seed: 1}}}
				if metric == MetricKL {
					opts.Data = images(t, "train", 256, DefaultBatch)
				}
				a, err := Run(context.Background(), m, Budget{Resource: Params, Fraction: frac}, opts)
				if err != nil {
					t.Fatal(err)
				}
				auto := planWith(t, m, svd.Policy{}, a.Selection(convert.Selection{}))
				if auto.ParamsAfter > uniform.ParamsAfter || auto.ParamsAfter != a.Params {
					t.Fatalf("%s: allocation has %d params (plan %d), uniform %d", metric, a.Params, auto.ParamsAfter, uniform.ParamsAfter)
				}
				res, err := evaluate.Run(context.Background(), []*onnxpb.ModelProto{m, apply(t, m, uniform), apply(t, m, auto)}, images(t, "test", 0, 50), evaluate.Options{Batch: 50})
				if err != nil {
					t.Fatal(err)
				}
				results[metric] = res
				u, b := res.Models[1].Accuracy, res.Models[2].Accuracy
				t.Logf("%s %s: params %d -> uniform %d, budget %.4f -> %d (%d layers replaced); top-1 original %.1f%%, uniform %.1f%%, budget %.1f%%; agreement uniform %.1f%%, budget %.1f%%",
					name, metric, uniform.ParamsBefore, uniform.ParamsAfter, frac, auto.ParamsAfter, auto.Replaced(),
					100*res.Models[0].Accuracy.Top1Rate(), 100*u.Top1Rate(), 100*b.Top1Rate(), 100*res.Fidelity[0].Agreement(), 100*res.Fidelity[1].Agreement())
				for _, l := range a.Layers {
					if l.Rank > 0 {
						t.Logf("  %-50s %4d->%-4d rank %3d loss %.4g", l.Name, l.In, l.Out, l.Rank, l.Loss)
					}
				}
			}
			for metric, res := range results {
				if res.Models[2].Accuracy.Top1 < res.Models[1].Accuracy.Top1 {
					t.Errorf("budget allocation (%s sensitivities) top-1 %d/%d below the uniform ratio's %d", metric, res.Models[2].Accuracy.Top1, res.Models[2].Accuracy.N, res.Models[1].Accuracy.Top1)
				}
			}
		})
	}
}
