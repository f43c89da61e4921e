package pipeline

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/finetune"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/rankalloc"
	"github.com/lprconv/lprconv/svd"
)

// fixture returns the MobileNetV1 fixture's path and model.
func fixture(t *testing.T) (string, *onnxpb.ModelProto) {
	t.Helper()
	path := testutil.Fixture(t, "mobilenetv1.onnx")
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, m
}

// images opens a fixture image folder with the Fashion-MNIST
// normalization, fitted to m's input; limit > 0 keeps that many images
// chosen at random.
func images(t *testing.T, m *onnxpb.ModelProto, split string, limit int) *dataset.Subset {
	t.Helper()
	in, err := evaluate.ModelInput(m)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(testutil.RepoRoot(t), "testdata", "images", split)
	src, err := dataset.Open(dir, dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	idx := dataset.Indices(src.Len())
	if limit > 0 {
		idx = dataset.Random(idx, limit, 1)
	}
	pre := dataset.Preprocess{Channels: in.Channels, Height: in.Height, Width: in.Width, Mean: []float32{0.286}, Std: []float32{0.353}}
	return &dataset.Subset{Source: src, Indices: idx, Pre: pre, Name: dir}
}

// rewrite plans m data-free with the diag residual (Tool "test", as the
// tests' Run calls name it) and applies the plan: what Run writes without
// data, fine-tuning or folding.
func rewrite(t *testing.T, m *onnxpb.ModelProto, rule svd.Policy, po convert.PlanOptions) (*convert.Plan, *onnxpb.ModelProto) {
	t.Helper()
	plan, err := convert.NewPlan(context.Background(), m, rule, svd.KindDiag, po)
	if err != nil {
		t.Fatal(err)
	}
	plan.Tool = "test"
	out, err := convert.Apply(m, plan)
	if err != nil {
		t.Fatal(err)
	}
	return plan, out
}

// TestRunDataFree: a data-free Run writes exactly the model that planning
// and rewriting give directly, and its counts are those of the written
// model; a dry run writes nothing and reports the encoded size.
func TestRunDataFree(t *testing.T) {
	path, m := fixture(t)
	ctx := context.Background()
	rule := svd.Policy{Ratio: 0.25, Multiple: 16}
	po := convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4}
	plan, want := rewrite(t, m, rule, po)
	out := filepath.Join(t.TempDir(), "small.onnx")
	var events []Event
	r, err := Run(ctx, Options{In: path, Out: out, Rule: rule, Residual: svd.KindDiag, Plan: po, Tool: "test", Relabel: RelabelOff,
		Progress: func(e Event) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(r.Model, want) {
		t.Error("the pipeline's model differs from NewPlan + Apply's")
	}
	got, err := onnxio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Error("the written model differs from NewPlan + Apply's")
	}
	sum, err := convert.Inspect(got, convert.ShapeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(out)
	orig, _ := os.Stat(path)
	if r.ParamsAfter != sum.Params || r.MACsAfter != sum.MACs || r.FileBytesAfter != st.Size() || r.FileBytesBefore != orig.Size() {
		t.Errorf("result %d params %d MACs %d bytes, written model %d %d %d", r.ParamsAfter, r.MACsAfter, r.FileBytesAfter, sum.Params, sum.MACs, st.Size())
	}
	if r.ParamsRatio != float64(sum.Params)/float64(plan.ParamsBefore) || r.Replaced != plan.Replaced() || r.DryRun {
		t.Errorf("ratio %v replaced %d dry %v", r.ParamsRatio, r.Replaced, r.DryRun)
	}
	if r.FineTune != nil || r.Allocation != nil || r.Verification != nil {
		t.Error("stages that were not asked for ran")
	}
	var msgs []string
	for _, e := range events {
		msgs = append(msgs, e.Message)
	}
	if len(msgs) != 3 || !strings.HasPrefix(msgs[0], "planning") || !strings.HasPrefix(msgs[2], "wrote") {
		t.Errorf("messages %q", msgs)
	}

	dry, err := Run(ctx, Options{In: path, Original: m, Rule: rule, Residual: svd.KindDiag, Plan: po, Tool: "test", Relabel: RelabelOff})
	if err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || dry.Output != "" || dry.FileBytesAfter != int64(proto.Size(want)) || !proto.Equal(dry.Model, want) {
		t.Errorf("dry run: %v %q %d bytes (want %d)", dry.DryRun, dry.Output, dry.FileBytesAfter, proto.Size(want))
	}
}

// TestRunBudget: a budget Run plans the ranks of rankalloc's allocation,
// names the reason of every layer it keeps, meets the budget, and with a
// Sensitivities cache gives the same plan while measuring once for two
// budgets.
func TestRunBudget(t *testing.T) {
	path, m := fixture(t)
	ctx := context.Background()
	po := convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4}
	budget := &BudgetOptions{Target: Budget{Resource: Params, Fraction: 0.8}, Multiple: 16}
	r, err := Run(ctx, Options{In: path, Original: m, Residual: svd.KindDiag, Plan: po, Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	a, err := rankalloc.Run(ctx, m, budget.Target, rankalloc.Options{Multiple: 16, Residual: svd.KindDiag, Plan: po})
	if err != nil {
		t.Fatal(err)
	}
	if r.ParamsRatio > 0.8 || r.ParamsAfter != a.Params {
		t.Errorf("params ratio %v, %d params; allocation %d", r.ParamsRatio, r.ParamsAfter, a.Params)
	}
	for i, l := range r.Layers {
		c := a.Layers[i]
		if l.Name != c.Name || l.Replace != (c.Rank > 0) || (l.Replace && l.Rank != c.Rank) {
			t.Errorf("layer %s: planned rank %d replace %v, allocated %d", l.Name, l.Rank, l.Replace, c.Rank)
		}
		if !l.Replace && (l.Excluded || !strings.Contains(l.Reason, "--budget")) {
			t.Errorf("kept layer %s: excluded %v, reason %q", l.Name, l.Excluded, l.Reason)
		}
	}
	var log strings.Builder
	cache := &Sensitivities{}
	for _, frac := range []float64{0.8, 0.7} {
		b := *budget
		b.Target.Fraction, b.Cache = frac, cache
		rc, err := Run(ctx, Options{In: path, Original: m, Residual: svd.KindDiag, Plan: po, Budget: &b,
			Progress: func(e Event) { log.WriteString(e.Message + "\n") }})
		if err != nil {
			t.Fatal(err)
		}
		if frac == 0.8 && !reflect.DeepEqual(rc.Layers, r.Layers) {
			t.Error("the cached measurement plans other ranks")
		}
		if rc.ParamsRatio > frac {
			t.Errorf("budget %v: params ratio %v", frac, rc.ParamsRatio)
		}
	}
	if n := strings.Count(log.String(), "measuring per-layer sensitivity"); n != 1 {
		t.Errorf("sensitivity measured %d times for two budgets, want once:\n%s", n, log.String())
	}
	_, err = Run(ctx, Options{In: path, Original: m, Residual: svd.KindDiag, Plan: po,
		Budget: &BudgetOptions{Target: Budget{Resource: Params, Fraction: 0.2}, Multiple: 16}})
	var inf *InfeasibleError
	if !errors.As(err, &inf) {
		t.Errorf("budget 0.2: error %v, want an infeasible budget", err)
	}
}

// TestRunFineTuneVerify fine-tunes a few steps with data-aware
// initialization and checks the verification against an independent
// evaluation of the written model; a cancelled run writes nothing.
func TestRunFineTuneVerify(t *testing.T) {
	path, m := fixture(t)
	ctx := context.Background()
	train, test := images(t, m, "train", 300), images(t, m, "test", 0)
	dir := t.TempDir()
	out := filepath.Join(dir, "ft.onnx")
	opts := Options{In: path, Original: m, Out: out, Rule: svd.Policy{Ratio: 0.25, Multiple: 16}, Residual: svd.KindDiag,
		Plan: convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4},
		FineTune: &FineTune{Train: *train, ValFraction: 0.1, Seed: 1, Init: InitData, Calib: 64,
			Options: finetune.Options{Steps: 6, Batch: 30, LR: 2e-3, Loss: finetune.Loss{Kind: finetune.LossKD, Temperature: 2}, Train: finetune.TrainLPR}},
		Verify: &Verify{Fidelity: test, Accuracy: true, Before: true, Batch: 50}}
	r, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	ft := r.FineTune
	if ft == nil || ft.Report == nil || ft.Report.Steps != 6 || ft.TrainImages != 270 || ft.ValImages != 30 || len(ft.Layers) != r.Replaced || ft.BeforeAgree == nil {
		t.Fatalf("fine-tune result %+v", ft)
	}
	saved, err := onnxio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := test.Open(50)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	ref, err := evaluate.Run(ctx, []*onnxpb.ModelProto{m, saved}, rd, evaluate.Options{Batch: 50})
	if err != nil {
		t.Fatal(err)
	}
	v := r.Verification
	f := ref.Fidelity[0]
	if v.Samples != 500 || v.Agreement != f.Agreement() || math.Abs(v.Cosine-f.Cosine()) > 1e-12 {
		t.Errorf("verification %d samples, agreement %v cosine %v; evaluated %d %v %v", v.Samples, v.Agreement, v.Cosine, f.N, f.Agreement(), f.Cosine())
	}
	if v.Top1 == nil || *v.Top1 != ref.Models[1].Accuracy.Top1Rate() || v.Top1Before == nil {
		t.Errorf("top-1 %v before %v, evaluated %v", v.Top1, v.Top1Before, ref.Models[1].Accuracy.Top1Rate())
	}

	// The sequential refit after the data-aware initialization visits
	// every replaced layer, reports it, and changes the student.
	seq := *opts.FineTune
	seq.Sequential, seq.Calib = true, 270
	so := opts
	so.FineTune, so.Out = &seq, filepath.Join(dir, "seq.onnx")
	rs, err := Run(ctx, so)
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.FineTune.Sequential; len(got) != r.Replaced || len(got) == 0 || got[0].Name != ft.Layers[0].Name {
		t.Errorf("sequential init report %+v for %d replaced layers", got, r.Replaced)
	}
	if len(ft.Sequential) != 0 {
		t.Errorf("sequential init ran without FineTune.Sequential: %+v", ft.Sequential)
	}
	refitted := 0
	for _, l := range rs.FineTune.Sequential {
		if l.Kept == "data" {
			refitted++
		}
	}
	if changed := rs.Verification.Cosine != v.Cosine; changed != (refitted > 0) {
		t.Errorf("%d layers refitted, student changed: %v", refitted, changed)
	}
	t.Logf("agreement on the test images: data-aware init %.4f, with the sequential refit %.4f (%d of %d layers refitted, 6 steps)",
		v.Agreement, rs.Verification.Agreement, refitted, r.Replaced)

	// Channel weights: measured once on the calibration images (Calib 64:
	// four batches of 16) for every matched value, reported, and used (the
	// student differs from the unweighted one); an unknown method fails.
	fw := *opts.FineTune
	fw.Weigh, fw.Options.Match = finetune.WeighFisher, []finetune.MatchSpec{{Kind: finetune.MatchLogits, Weight: 1}, {Kind: finetune.MatchModules, Weight: 1}}
	plain := fw
	plain.Weigh = ""
	fo, po := opts, opts
	fo.FineTune, fo.Out = &fw, filepath.Join(dir, "fisher.onnx")
	po.FineTune, po.Out = &plain, filepath.Join(dir, "plain.onnx")
	rf, err := Run(ctx, fo)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := Run(ctx, po)
	if err != nil {
		t.Fatal(err)
	}
	if w := rf.FineTune.ChannelWeights; w == nil || w.Method != finetune.WeighFisher || w.Values != r.Replaced || w.Images != 64 || rp.FineTune.ChannelWeights != nil {
		t.Errorf("channel weights %+v (unweighted run: %+v), want fisher on %d values and 64 images", w, rp.FineTune.ChannelWeights, r.Replaced)
	}
	if rf.Verification.Cosine == rp.Verification.Cosine {
		t.Error("the channel weights did not change the student")
	}
	fw.Weigh = "hessian"
	fo.Out = filepath.Join(dir, "bad.onnx")
	if _, err := Run(ctx, fo); err == nil || !strings.Contains(err.Error(), "hessian") {
		t.Errorf("unknown channel weights: %v", err)
	}

	// ReconstructLRBoost speeds up the low-rank modules in the
	// reconstruction stage (the student differs) and nowhere else (without
	// that stage it changes nothing).
	recon := func(steps int, boost float64, name string) *Result {
		t.Helper()
		f := *opts.FineTune
		f.ReconstructSteps, f.ReconstructLRBoost = steps, boost
		o := opts
		o.FineTune, o.Out = &f, filepath.Join(dir, name)
		res, err := Run(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if steps > 0 && (res.FineTune.Reconstruct == nil || res.FineTune.Reconstruct.Steps != steps) {
			t.Fatalf("reconstruction report %+v, want %d steps", res.FineTune.Reconstruct, steps)
		}
		return res
	}
	if a, b := recon(3, 0, "r.onnx"), recon(3, 4, "rb.onnx"); a.Verification.Cosine == b.Verification.Cosine {
		t.Error("the reconstruction lr boost did not change the student")
	}
	if b := recon(0, 4, "b.onnx"); b.Verification.Cosine != v.Cosine {
		t.Errorf("the boost changed a run without reconstruction: cosine %v, want %v", b.Verification.Cosine, v.Cosine)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	opts.Out = filepath.Join(dir, "cancelled.onnx")
	if _, err := Run(cancelled, opts); err == nil {
		t.Error("a cancelled run succeeded")
	}
	if _, err := os.Stat(opts.Out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a cancelled run wrote %s: %v", opts.Out, err)
	}
}

func TestOptionsErrors(t *testing.T) {
	path, _ := fixture(t)
	for name, o := range map[string]Options{
		"no model":     {},
		"val fraction": {In: path, FineTune: &FineTune{ValFraction: 1, Options: finetune.Options{Batch: 8}}},
		"batch":        {In: path, FineTune: &FineTune{}},
		"init":         {In: path, FineTune: &FineTune{Init: "x", Options: finetune.Options{Batch: 8}}},
		"verify":       {In: path, Verify: &Verify{}},
	} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseInit("weights"); err != nil {
		t.Error(err)
	}
}

// TestCalibrationImagesSpanClasses checks that the calibration images are
// drawn from the whole training set: the committed images are listed class
// by class, so the first 100 would all be T-shirts.
func TestCalibrationImagesSpanClasses(t *testing.T) {
	_, m := fixture(t)
	train := images(t, m, "train", 0)
	f := &fineTuner{ft: &FineTune{Train: *train, Calib: 100, Seed: 1, Options: finetune.Options{Batch: 10}}, r: &Result{}}
	if err := f.split(); err != nil {
		t.Fatal(err)
	}
	if len(f.calib) != 100 || !slices.IsSorted(f.calib) {
		t.Fatalf("%d calibration images, sorted %v", len(f.calib), slices.IsSorted(f.calib))
	}
	classes := map[int]int{}
	for _, i := range f.calib {
		s, err := train.Source.Sample(i)
		if err != nil {
			t.Fatal(err)
		}
		classes[s.Label]++
	}
	for c := range 10 {
		if classes[c] < 4 {
			t.Errorf("class %d has %d of the 100 calibration images (%v)", c, classes[c], classes)
		}
	}
	// another seed draws other images
	g := &fineTuner{ft: &FineTune{Train: *train, Calib: 100, Seed: 2, Options: finetune.Options{Batch: 10}}, r: &Result{}}
	if err := g.split(); err != nil {
		t.Fatal(err)
	}
	if slices.Equal(f.calib, g.calib) {
		t.Error("seeds 1 and 2 calibrate on the same images")
	}
}
