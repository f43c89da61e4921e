package sweep

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/finetune"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/pipeline"
	"github.com/lprconv/lprconv/svd"
)

// fixtureOptions returns pipeline options for the MobileNetV1 fixture with
// the test PNGs as labelled set (mean and std from testdata/README.md).
func fixtureOptions(t *testing.T) PipelineOptions {
	t.Helper()
	root := testutil.RepoRoot(t)
	return PipelineOptions{
		Model:            testutil.Fixture(t, "mobilenetv1.onnx"),
		Eval:             filepath.Join(root, "testdata", "images", "test"),
		Mean:             []float32{0.2860},
		Std:              []float32{0.3530},
		BatchSize:        50,
		Threads:          2,
		Seed:             1,
		SpectrumResidual: svd.KindDiag,
		Tool:             "lprconv test",
	}
}

// predictions runs the model file at path on the fixture's test images in
// the engine and returns its top-1 classes and the labels.
func predictions(t *testing.T, path string, o PipelineOptions) (pred, labels []int) {
	t.Helper()
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	md, err := engine.NewModel(m, engine.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	src, err := dataset.Open(o.Eval, dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	pre := dataset.Preprocess{Channels: 3, Height: 32, Width: 32, Mean: o.Mean, Std: o.Std}
	x := make([]float32, pre.Size())
	for i := 0; i < src.Len(); i++ {
		s, err := src.Sample(i)
		if err != nil {
			t.Fatal(err)
		}
		if err := pre.Apply(s, x); err != nil {
			t.Fatal(err)
		}
		out, err := md.Run(map[string]*engine.Tensor{"input": engine.NewTensorF(x, 1, 3, 32, 32)})
		if err != nil {
			t.Fatal(err)
		}
		pred = append(pred, evaluate.ArgMax(out["logits"].F))
		labels = append(labels, s.Label)
	}
	return pred, labels
}

func TestPipelineOnFixture(t *testing.T) {
	o := fixtureOptions(t)
	p, err := NewPipeline(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	orig, err := p.Original(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// The original: sizes as convert and the file system count them, and
	// the top-1 accuracy that testdata/models/fixtures.json records for the
	// 500 test PNGs (92.6%, measured in PyTorch).
	m, err := onnxio.Load(o.Model)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := convert.Inspect(m, convert.ShapeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(o.Model)
	b := orig.Baseline
	if b.Params != sum.Params || b.MACs != sum.MACs || b.FileBytes != st.Size() {
		t.Errorf("baseline %d params %d MACs %d bytes, want %d %d %d", b.Params, b.MACs, b.FileBytes, sum.Params, sum.MACs, st.Size())
	}
	if b.Accuracy == nil || math.Abs(*b.Accuracy-0.926) > 0.0021 {
		t.Errorf("original accuracy %v, want 0.926 (fixtures.json) within one image", b.Accuracy)
	}
	if len(orig.Spectra) != sum.Candidates || len(orig.Spectra) == 0 {
		t.Fatalf("%d spectra for %d candidates", len(orig.Spectra), sum.Candidates)
	}
	for _, s := range orig.Spectra {
		if len(s.Singular) != s.C {
			t.Errorf("%s: %d singular values for C=%d", s.Name, len(s.Singular), s.C)
		}
		for i := 1; i < len(s.Singular); i++ {
			if s.Singular[i] > s.Singular[i-1]*(1+1e-9) || s.Singular[i] < 0 {
				t.Errorf("%s: singular values not decreasing and non-negative at %d", s.Name, i)
				break
			}
		}
	}
	origPred, labels := predictions(t, o.Model, o)

	dir := t.TempDir()
	for _, cfg := range []Config{{Residual: "diag", Ratio: 0.25}, {Residual: "identity", Ratio: 0.125}, {Residual: "none", Ratio: 1}} {
		t.Run(cfg.Name(), func(t *testing.T) {
			path := filepath.Join(dir, cfg.ModelFile(o.Model))
			row, err := p.Evaluate(ctx, cfg, path)
			if err != nil {
				t.Fatal(err)
			}
			cm, err := onnxio.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			cs, err := convert.Inspect(cm, convert.ShapeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if row.Agreement == nil || row.Cosine == nil {
				t.Fatalf("agreement %v, cosine %v: want both measured", row.Agreement, row.Cosine)
			}
			st, _ := os.Stat(path)
			if row.Params != cs.Params || row.MACs != cs.MACs || row.FileBytes != st.Size() {
				t.Errorf("row %d params %d MACs %d bytes; file has %d %d %d", row.Params, row.MACs, row.FileBytes, cs.Params, cs.MACs, st.Size())
			}
			if row.ParamsRatio != float64(row.Params)/float64(b.Params) || row.FileRatio != float64(row.FileBytes)/float64(b.FileBytes) {
				t.Errorf("ratios %v %v do not match the counts", row.ParamsRatio, row.FileRatio)
			}
			// Replaced layers have rank ceil(ratio*C); at ratio 1 nothing
			// is smaller, so nothing is replaced and outputs are identical.
			for _, l := range row.Layers {
				if want := int(math.Ceil(cfg.Ratio * float64(l.C))); l.Rank != want {
					t.Errorf("%s: rank %d, want %d", l.Name, l.Rank, want)
				}
			}
			if cfg.Ratio == 1 {
				if len(row.Layers) != 0 || *row.Agreement != 1 || math.Abs(*row.Cosine-1) > 1e-9 || row.ParamsRatio != 1 {
					t.Errorf("ratio 1: %d layers, agreement %v, cosine %v, params ratio %v; want the original", len(row.Layers), *row.Agreement, *row.Cosine, row.ParamsRatio)
				}
			} else if len(row.Layers) == 0 || row.ParamsRatio >= 1 {
				t.Errorf("%d layers replaced, params ratio %v", len(row.Layers), row.ParamsRatio)
			}
			// Agreement and accuracy recomputed independently from the
			// saved file, one image at a time.
			pred, _ := predictions(t, path, o)
			agree, hits := 0, 0
			for i := range pred {
				if pred[i] == origPred[i] {
					agree++
				}
				if pred[i] == labels[i] {
					hits++
				}
			}
			if want := float64(agree) / float64(len(pred)); *row.Agreement != want {
				t.Errorf("agreement %v, recomputed %v", *row.Agreement, want)
			}
			if want := float64(hits) / float64(len(pred)); row.AccBefore == nil || *row.AccBefore != want {
				t.Errorf("accuracy %v, recomputed %v", row.AccBefore, want)
			}
			if *row.Cosine <= 0 || *row.Cosine > 1+1e-12 {
				t.Errorf("cosine %v out of range", *row.Cosine)
			}
		})
	}
}

func TestPipelineFingerprintAndInputs(t *testing.T) {
	o := fixtureOptions(t)
	o.Eval = ""
	o.Random = 8
	a, err := NewPipeline(o)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, ok := a.fidelity.(dataset.Noise); !ok || a.fidelity.Len() != 8 {
		t.Errorf("fidelity inputs %T with %d samples, want 8 random", a.fidelity, a.fidelity.Len())
	}
	b, err := NewPipeline(o)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.Fingerprint() != b.Fingerprint() {
		t.Error("same options give different fingerprints")
	}
	for name, change := range map[string]func(*PipelineOptions){
		"seed":    func(o *PipelineOptions) { o.Seed = 2 },
		"random":  func(o *PipelineOptions) { o.Random = 9 },
		"mean":    func(o *PipelineOptions) { o.Mean = []float32{0.5} },
		"version": func(o *PipelineOptions) { o.Version = "x" },
		"model":   func(o *PipelineOptions) { o.Model = testutil.Fixture(t, "mobilenetv1_bn.onnx") },
	} {
		c := o
		change(&c)
		p, err := NewPipeline(c)
		if err != nil {
			t.Fatal(err)
		}
		if p.Fingerprint() == a.Fingerprint() {
			t.Errorf("changing %s keeps the fingerprint", name)
		}
		p.Close()
	}
	// Threads do not change results, so they do not change the fingerprint.
	c := o
	c.Threads = 1
	p, err := NewPipeline(c)
	if err != nil {
		t.Fatal(err)
	}
	if p.Fingerprint() != a.Fingerprint() {
		t.Error("thread count changes the fingerprint")
	}
	p.Close()

	// Unlabelled --eval data is refused.
	unl := t.TempDir()
	src := filepath.Join(testutil.RepoRoot(t), "testdata", "images", "test", "0_tshirt")
	entries, _ := os.ReadDir(src)
	for _, e := range entries[:3] {
		data, _ := os.ReadFile(filepath.Join(src, e.Name()))
		os.WriteFile(filepath.Join(unl, e.Name()), data, 0o644)
	}
	c = o
	c.Eval = unl
	if p, err := NewPipeline(c); err == nil {
		p.Close()
		t.Error("unlabelled --eval accepted")
	}
}

func TestPipelineFineTune(t *testing.T) {
	o := fixtureOptions(t)
	plain, err := NewPipeline(o)
	if err != nil {
		t.Fatal(err)
	}
	plain.Close()
	o.Data = filepath.Join(testutil.RepoRoot(t), "testdata", "images", "train")
	o.Limit = 320
	o.FineTune = &pipeline.FineTune{
		Options: finetune.Options{Steps: 12, Batch: 32, LR: 2e-3,
			Loss: finetune.Loss{Kind: finetune.LossKD, Temperature: 2}, Train: finetune.TrainLPR},
		Init: pipeline.InitData, Calib: 128, Seed: 1,
	}
	p, err := NewPipeline(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Fingerprint() == plain.Fingerprint() {
		t.Error("fine-tuning does not change the fingerprint")
	}
	if !p.evalIsFidelity {
		t.Error("fine-tuning should measure fidelity on the labelled set, not the training images")
	}
	ctx := context.Background()
	orig, err := p.Original(ctx)
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(orig.Notes, " ")
	if !strings.Contains(notes, "distilled from the original") || !strings.Contains(notes, "320 images") {
		t.Errorf("notes do not describe the fine-tuning: %s", notes)
	}
	dir := t.TempDir()
	cfg := Config{Residual: "diag", Ratio: 0.125}
	path := filepath.Join(dir, cfg.ModelFile(o.Model))
	row, err := p.Evaluate(ctx, cfg, path)
	if err != nil {
		t.Fatal(err)
	}
	if p.calib.Len() == 0 {
		t.Fatal("no calibration covariances for data-aware initialization")
	}
	if row.AccBefore == nil || row.AccAfter == nil {
		t.Fatalf("accuracy before %v after %v", row.AccBefore, row.AccAfter)
	}
	// Distillation must improve the compressed model (about 40% -> 70% on
	// this fixture), and the reported accuracy is that of the saved file.
	t.Logf("diag r=1/8: accuracy %.3f before fine-tuning, %.3f after; agreement %.3f", *row.AccBefore, *row.AccAfter, *row.Agreement)
	if *row.AccAfter <= *row.AccBefore+0.05 {
		t.Errorf("fine-tuning did not help: accuracy %v before, %v after", *row.AccBefore, *row.AccAfter)
	}
	pred, labels := predictions(t, path, o)
	hits := 0
	for i := range pred {
		if pred[i] == labels[i] {
			hits++
		}
	}
	if want := float64(hits) / float64(len(pred)); *row.AccAfter != want {
		t.Errorf("accuracy after %v, recomputed from the saved model %v", *row.AccAfter, want)
	}
	if _, err := os.Stat(filepath.Join(dir, StateDir, cfg.Name()+".ckpt")); !os.IsNotExist(err) {
		t.Errorf("checkpoint left behind: %v", err)
	}
}

// TestFingerprintFineTuneObjective checks that the fine-tuning objective
// (match, augmentation, channel weights, stages) is part of the
// fingerprint, so that a sweep re-run with another objective does not
// reuse recorded results, and that an unset objective keeps the
// fingerprint of a logit-only sweep.
func TestFingerprintFineTuneObjective(t *testing.T) {
	base := PipelineOptions{FineTune: &pipeline.FineTune{Seed: 1, Options: finetune.Options{Steps: 3, Batch: 8, LR: 1e-3}}}
	fp := func(change func(f *pipeline.FineTune)) string {
		o := base
		f := *base.FineTune
		if change != nil {
			change(&f)
		}
		o.FineTune = &f
		s, err := fingerprint("model", o, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	plain := fp(nil)
	if again := fp(func(f *pipeline.FineTune) { f.Options.Match = nil }); again != plain {
		t.Error("an unset objective changes the fingerprint")
	}
	modules, err := finetune.ParseMatch("logits+modules")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{plain: "plain"}
	for name, change := range map[string]func(f *pipeline.FineTune){
		"match":       func(f *pipeline.FineTune) { f.Options.Match = modules },
		"augment":     func(f *pipeline.FineTune) { f.Options.Augment = dataset.Augment{Flip: true} },
		"weigh":       func(f *pipeline.FineTune) { f.Weigh = finetune.WeighFisher },
		"reconstruct": func(f *pipeline.FineTune) { f.ReconstructSteps = 2 },
		"sequential":  func(f *pipeline.FineTune) { f.Sequential = true },
		"rank lr":     func(f *pipeline.FineTune) { f.Options.RankLRRef, f.Options.RankLRPower = 24, 1 },
		"recon boost": func(f *pipeline.FineTune) { f.ReconstructLRBoost = 2.5 },
		"boost":       func(f *pipeline.FineTune) { f.Options.LowRankLRBoost = 2.5 },
	} {
		s := fp(change)
		if other, ok := seen[s]; ok {
			t.Errorf("%s gives the fingerprint of %s", name, other)
		}
		seen[s] = name
	}
}
