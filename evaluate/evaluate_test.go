package evaluate

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

func TestAccuracy(t *testing.T) {
	logits := []float32{
		0.1, 0.9, 0.0, // label 1: top-1
		0.5, 0.2, 0.3, // label 2: second
		0.2, 0.2, 0.6, // unlabelled
	}
	var a Accuracy
	if err := a.Add(logits, 3, []int{1, 2, -1}); err != nil {
		t.Fatal(err)
	}
	if a.N != 3 || a.Labelled != 2 || a.Top1 != 1 || a.Top5 != 2 {
		t.Fatalf("got %+v", a)
	}
	if got := a.Top1Rate(); got != 0.5 {
		t.Fatalf("Top1Rate = %v", got)
	}
	for _, bad := range []struct {
		logits []float32
		labels []int
	}{
		{logits[:5], []int{0, 1}},
		{logits[:3], []int{3}},
	} {
		if err := a.Add(bad.logits, 3, bad.labels); err == nil {
			t.Errorf("Add(%v, %v) accepted bad input", bad.logits, bad.labels)
		}
	}
	if !math.IsNaN((Accuracy{}).Top1Rate()) {
		t.Error("Top1Rate without labels is not NaN")
	}
}

func TestTop5Ties(t *testing.T) {
	row := []float32{1, 1, 1, 1, 1, 1}
	var a Accuracy
	if err := a.Add(row, 6, []int{5}); err != nil {
		t.Fatal(err)
	}
	// Five equal logits with lower indices rank ahead of label 5.
	if a.Top5 != 0 || a.Top1 != 0 {
		t.Fatalf("ties: got %+v", a)
	}
}

func TestFidelity(t *testing.T) {
	a := []float32{1, 0, 0, 0, 2, 0}
	b := []float32{1, 0, 0, 0, 0, 2}
	var f Fidelity
	if err := f.Add(a, b, 3); err != nil {
		t.Fatal(err)
	}
	if f.N != 2 || f.Agree != 1 || f.Agreement() != 0.5 {
		t.Fatalf("agreement: %+v", f)
	}
	if f.MaxAbs != 2 {
		t.Fatalf("MaxAbs = %v", f.MaxAbs)
	}
	if got, want := f.Cosine(), 0.5; math.Abs(got-want) > 1e-12 {
		t.Fatalf("Cosine = %v, want %v", got, want)
	}
	if got, want := f.RelativeL2(), math.Sqrt(8.0/5.0); math.Abs(got-want) > 1e-12 {
		t.Fatalf("RelativeL2 = %v, want %v", got, want)
	}
	if got, want := f.RelativeMaxAbs(), 1.0; got != want {
		t.Fatalf("RelativeMaxAbs = %v, want %v", got, want)
	}
	if err := f.Add(a, b[:3], 3); err == nil {
		t.Error("mismatched sizes accepted")
	}
}

// fixtureRecord is the part of testdata/models/fixtures.json this test uses.
type fixtureRecord struct {
	Input struct {
		Mean []float32 `json:"mean"`
		Std  []float32 `json:"std"`
	} `json:"input"`
	Models map[string]struct {
		Top1PNG float64 `json:"top1_test_pngs"`
		Top5PNG float64 `json:"top5_test_pngs"`
	} `json:"models"`
}

// TestFixtureAccuracy checks that the engine reproduces, on the committed
// test images, the accuracy PyTorch measured for every fixture.
func TestFixtureAccuracy(t *testing.T) {
	root := filepath.Join("..", "testdata")
	raw, err := os.ReadFile(filepath.Join(root, "models", "fixtures.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec fixtureRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Models) == 0 {
		t.Fatal("fixtures.json lists no models")
	}
	for name, want := range rec.Models {
		t.Run(name, func(t *testing.T) {
			m, err := onnxio.Load(filepath.Join(root, "models", name))
			if err != nil {
				t.Fatal(err)
			}
			in, err := ModelInput(m)
			if err != nil {
				t.Fatal(err)
			}
			src, err := dataset.Open(filepath.Join(root, "images", "test"), dataset.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			pre := dataset.Preprocess{Channels: in.Channels, Height: in.Height, Width: in.Width, Mean: rec.Input.Mean, Std: rec.Input.Std}
			loader, err := dataset.NewLoader(src, dataset.Indices(src.Len()), pre, dataset.LoaderOptions{BatchSize: 100})
			if err != nil {
				t.Fatal(err)
			}
			defer loader.Close()
			res, err := Run(context.Background(), []*onnxpb.ModelProto{m}, loader, Options{Batch: 100})
			if err != nil {
				t.Fatal(err)
			}
			acc := res.Models[0].Accuracy
			if acc.Labelled != 500 {
				t.Fatalf("scored %d images, want 500", acc.Labelled)
			}
			if got := 100 * acc.Top1Rate(); math.Abs(got-want.Top1PNG) > 0.1 {
				t.Errorf("top-1 %.2f%%, PyTorch measured %.2f%%", got, want.Top1PNG)
			}
			if got := 100 * acc.Top5Rate(); math.Abs(got-want.Top5PNG) > 0.1 {
				t.Errorf("top-5 %.2f%%, PyTorch measured %.2f%%", got, want.Top5PNG)
			}
		})
	}
}

// TestCompareFoldedAndKeptBN compares the fixture exported with BatchNorm
// folded against the export that keeps BatchNormalization nodes: they are
// the same network, so they must agree to float32 round-off.
func TestCompareFoldedAndKeptBN(t *testing.T) {
	var models []*onnxpb.ModelProto
	for _, name := range []string{"mobilenetv1.onnx", "mobilenetv1_bn.onnx", "mobilenetv1_op9.onnx"} {
		m, err := onnxio.Load(filepath.Join("..", "testdata", "models", name))
		if err != nil {
			t.Fatal(err)
		}
		models = append(models, m)
	}
	noise := dataset.Noise{Count: 40, Size: 3 * 32 * 32, Seed: 1}
	open := func() dataset.Reader {
		r, err := noise.Open(16)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	var ref Reference
	res, err := Run(context.Background(), models, open(), Options{Batch: 16, Record: &ref})
	if err != nil {
		t.Fatal(err)
	}
	for k, f := range res.Fidelity {
		if f.N != 40 || f.Agreement() != 1 || f.RelativeMaxAbs() > 1e-4 || f.Cosine() < 0.999999 {
			t.Errorf("model %d vs 1: n=%d agreement=%v relmax=%g cosine=%v", k+2, f.N, f.Agreement(), f.RelativeMaxAbs(), f.Cosine())
		}
	}
	if res.Models[0].Accuracy.Labelled != 0 || res.Models[0].Accuracy.N != 40 {
		t.Errorf("random data: %+v", res.Models[0].Accuracy)
	}
	// Against the recorded reference, each model gives exactly the
	// fidelity of running it next to model 1.
	if ref.N != 40 || ref.Classes != res.Classes || len(ref.Logits) != 40*res.Classes {
		t.Fatalf("reference of %d samples, %d classes, %d logits", ref.N, ref.Classes, len(ref.Logits))
	}
	again, err := Run(context.Background(), models[1:], open(), Options{Batch: 16, Against: &ref})
	if err != nil {
		t.Fatal(err)
	}
	for k, f := range again.Fidelity {
		if f != res.Fidelity[k] {
			t.Errorf("model %d against the reference: %+v, next to model 1: %+v", k+2, f, res.Fidelity[k])
		}
	}
	short := dataset.Noise{Count: 39, Size: noise.Size, Seed: 1}
	r, err := short.Open(16)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := Run(context.Background(), models[1:], r, Options{Batch: 16, Against: &ref}); err == nil {
		t.Error("fewer samples than the reference accepted")
	}
}
