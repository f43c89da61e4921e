package finetune

import (
	"context"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// moduleError is the summed normalized squared error of the student's LPR
// module outputs against the teacher's on 100 committed test images.
func moduleError(t *testing.T, teacher, student *onnxpb.ModelProto) float64 {
	t.Helper()
	mods := ModuleOutputs(student)
	shape := map[string][]int{"input": {100, 3, 32, 32}}
	tp, err := engine.Compile(teacher, engine.Options{InputShapes: shape, Outputs: mods})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	sp, err := engine.Compile(student, engine.Options{InputShapes: shape, Outputs: mods})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	x := make([]float32, 100*3*32*32)
	if _, err := loader(t, "test", 100, 100, false).Next(x, make([]int, 100)); err != nil {
		t.Fatal(err)
	}
	in := map[string]*engine.Tensor{"input": engine.NewTensorF(x, 100, 3, 32, 32)}
	if err := tp.Forward(in); err != nil {
		t.Fatal(err)
	}
	if err := sp.Forward(in); err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, m := range mods {
		s, q := sp.Value(m), tp.Value(m)
		total += FeatureLoss(s.F, q.F, 1, make([]float32, len(s.F)))
	}
	return total
}

// TestReconstructLowersModuleError checks that the reconstruction stage
// brings every module's output closer to the teacher's on unseen images,
// and leaves its input alone.
func TestReconstructLowersModuleError(t *testing.T) {
	teacher, plan := lprFixture(t)
	student, err := convert.Apply(teacher, plan)
	if err != nil {
		t.Fatal(err)
	}
	before := moduleError(t, teacher, student)
	out, rep, err := Reconstruct(context.Background(), teacher, student, loader(t, "train", 200, 50, true), distillOpts(1000), 20)
	if err != nil {
		t.Fatal(err)
	}
	after := moduleError(t, teacher, out)
	t.Logf("module output error on test images: %.4f before, %.4f after %d steps", before, after, rep.Steps)
	if rep.Steps != 20 || after > 0.8*before {
		t.Errorf("reconstruction: %d steps, module error %.4f -> %.4f", rep.Steps, before, after)
	}
	if again := moduleError(t, teacher, student); again != before {
		t.Errorf("Reconstruct modified its input: %.4f, was %.4f", again, before)
	}
	if _, _, err := Reconstruct(context.Background(), teacher, student, nil, distillOpts(1), 0); err == nil {
		t.Error("zero steps accepted")
	}
}

// TestDistillAfterReconstructOnOneLoader checks that Distill continues on
// a loader that Reconstruct left at the end of an epoch (4 batches of 50
// per epoch, 8 steps), and still refuses data without one full batch.
func TestDistillAfterReconstructOnOneLoader(t *testing.T) {
	teacher, plan := lprFixture(t)
	student, err := convert.Apply(teacher, plan)
	if err != nil {
		t.Fatal(err)
	}
	train := loader(t, "train", 200, 50, true)
	opts := distillOpts(4)
	opts.StepsPerEpoch = 4
	mid, _, err := Reconstruct(context.Background(), teacher, student, train, opts, 8)
	if err != nil {
		t.Fatal(err)
	}
	if _, rep, err := Distill(context.Background(), teacher, mid, Data{Train: train}, opts); err != nil || rep.Steps != 4 {
		t.Fatalf("distill after reconstruct on the same loader: %v", err)
	}
	if _, _, err := Distill(context.Background(), teacher, mid, Data{Train: loader(t, "train", 40, 50, true)}, opts); err == nil || !strings.Contains(err.Error(), "yields no batch") {
		t.Errorf("40 images in batches of 50: %v", err)
	}
}
