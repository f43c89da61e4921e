package finetune

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// parallelTolerance bounds, after a few steps, max|p_2 - p_1| / max|p_1|
// over every trained tensor between a 2-thread run (batch-parallel: two
// slices, gradients summed in slice order) and a 1-thread run. The
// gradients differ by float32 reassociation only (relative 1e-6, see
// engine's batchGradTolerance), and a few Adam steps of learning rate 2e-3
// keep the parameters within this bound.
const parallelTolerance = 1e-4

// TestDistillThreadsAgreeAndAreDeterministic fine-tunes the same student
// with 1 and 2 threads: two 2-thread runs must give the same bits, and the
// 2-thread parameters must match the 1-thread ones within
// parallelTolerance.
func TestDistillThreadsAgreeAndAreDeterministic(t *testing.T) {
	teacher, plan := lprFixture(t)
	student, err := convert.Apply(teacher, plan)
	if err != nil {
		t.Fatal(err)
	}
	run := func(threads int) *onnxpb.ModelProto {
		train := loader(t, "train", 200, 50, true)
		o := distillOpts(4)
		o.Threads = threads
		out, _, err := Distill(context.Background(), teacher, student, Data{Train: train, Seek: train.Seek}, o)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	one, two, again := run(1), run(2), run(2)
	worst := 0.0
	defer func() { t.Logf("largest relative difference, 2 threads vs 1: %.3g", worst) }()
	for _, n := range TrainableTensors(student, TrainLPR) {
		a, b, c := initializer(t, one, n), initializer(t, two, n), initializer(t, again, n)
		if !slices.Equal(b, c) {
			t.Errorf("%s: two 2-thread runs differ", n)
		}
		var d, r float64
		for i := range a {
			d = max(d, math.Abs(float64(a[i])-float64(b[i])))
			r = max(r, math.Abs(float64(a[i])))
		}
		worst = max(worst, d/max(r, 1e-30))
		if d > parallelTolerance*r {
			t.Errorf("%s: 2 threads vs 1: max|diff| %.3g > %g * max|p| (%.3g)", n, d, parallelTolerance, r)
		}
	}
}
