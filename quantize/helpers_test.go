package quantize

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// fixtureModel loads testdata/models/<name>, LPR-compressed by convert's
// API with lprconv compress's defaults (--rank-ratio 0.25 --multiple 16
// --channel-align 4 --residual diag, data-free) when lpr is set.
func fixtureModel(t testing.TB, name string, lpr bool) *onnxpb.ModelProto {
	t.Helper()
	m, err := onnxio.Load(testutil.Fixture(t, name))
	if err != nil {
		t.Fatal(err)
	}
	if !lpr {
		return m
	}
	res, err := svd.ParseResidual("diag")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := convert.NewPlan(context.Background(), m, svd.Policy{Ratio: 0.25, Multiple: 16}, res,
		convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Replaced() == 0 {
		t.Fatalf("%s: the plan replaces no layer", name)
	}
	out, err := convert.Apply(m, plan)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// testImages reads the 500 committed test images, normalized as the
// fixtures were trained (mean 0.286, std 0.353), as one NCHW batch.
func testImages(t testing.TB) ([]float32, []int) {
	t.Helper()
	src, err := dataset.Open(filepath.Join(testutil.RepoRoot(t), "testdata", "images", "test"), dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	x, labels, err := dataset.ReadAll(src, dataset.Preprocess{Channels: 3, Height: 32, Width: 32, Mean: []float32{0.286}, Std: []float32{0.353}})
	if err != nil {
		t.Fatal(err)
	}
	return x, labels
}

// trainLoader streams the 1,000 committed training images (calibration
// data), in batches of 32.
func trainLoader(t testing.TB) *dataset.Loader {
	t.Helper()
	src, err := dataset.Open(filepath.Join(testutil.RepoRoot(t), "testdata", "images", "train"), dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	l, err := dataset.NewLoader(src, dataset.Random(dataset.Indices(src.Len()), src.Len(), 1),
		dataset.Preprocess{Channels: 3, Height: 32, Width: 32, Mean: []float32{0.286}, Std: []float32{0.353}},
		dataset.LoaderOptions{BatchSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// save writes m to dir/name and returns the path.
func save(t testing.TB, dir, name string, m *onnxpb.ModelProto) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := onnxio.Save(p, m, onnxio.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

// ortLogits runs the model at path in native ONNX Runtime over x (samples
// of 3x32x32) in batches of 100 and returns the logits, row-major.
func ortLogits(t testing.TB, path string, x []float32, opts ortrun.Options) []float32 {
	t.Helper()
	s, err := ortrun.NewSession(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const per = 3 * 32 * 32
	var out []float32
	for i := 0; i < len(x); i += 100 * per {
		j := min(len(x), i+100*per)
		r, err := s.Run(map[string]ortrun.Tensor{"input": {Shape: []int64{int64((j - i) / per), 3, 32, 32}, Data: x[i:j]}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r["logits"].Data...)
	}
	return out
}

// top1 returns the arg-max class of every row of logits with k columns.
func top1(logits []float32, k int) []int {
	c := make([]int, len(logits)/k)
	for i := range c {
		c[i] = evaluate.ArgMax(logits[i*k : (i+1)*k])
	}
	return c
}

// agreement returns the fraction of equal entries of a and b, and the
// fraction of a equal to labels.
func agreement(a, b []int) float64 {
	n := 0
	for i := range a {
		if a[i] == b[i] {
			n++
		}
	}
	return float64(n) / float64(len(a))
}
