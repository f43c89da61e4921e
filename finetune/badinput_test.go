package finetune

import (
	"context"
	"errors"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/convert"
)

// TestDivergenceFirstStep is the fine-tuning part of the hostile-input
// corpus (issue 11, case 5): `--steps 1 --lr 1e30` used to return a model
// with weights around 1e30, since the loss guard only looks at the loss of
// the next step. Every step's update is now checked, the first included; a
// diverged run returns ErrDiverged naming --lr, no model, and leaves no
// checkpoint behind.
func TestDivergenceFirstStep(t *testing.T) {
	teacher, plan := lprFixture(t)
	student, err := convert.Apply(teacher, plan)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		steps    int
		lr       float64
		opt      OptimizerKind
		diverges bool
	}{
		{"adam 1 step lr 1e30", 1, 1e30, Adam, true},
		{"sgd 1 step lr 1e30", 1, 1e30, SGD, true},
		{"adam 2 steps lr 1e30", 2, 1e30, Adam, true},
		{"sgd 1 step lr 1e6", 1, 1e6, SGD, true},
		{"adam 2 steps lr 2e-3 (sane)", 2, 2e-3, Adam, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := distillOpts(tc.steps)
			o.LR = tc.lr
			o.Optimizer = OptimizerConfig{Kind: tc.opt}
			dir := t.TempDir()
			o.CheckpointDir, o.CheckpointEvery = dir, 1
			out, _, err := Distill(context.Background(), teacher, student, Data{Train: loader(t, "train", 0, 50, true)}, o)
			if !tc.diverges {
				if err != nil || out == nil {
					t.Fatalf("sane run: model %v, err %v", out != nil, err)
				}
				return
			}
			if !errors.Is(err, ErrDiverged) || !strings.Contains(err.Error(), "--lr") || !strings.Contains(err.Error(), "step 1") {
				t.Fatalf("err = %v, want ErrDiverged at step 1 naming --lr", err)
			}
			if out != nil {
				t.Fatal("a diverged run returned a model")
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				t.Errorf("a diverged first step left %s in the checkpoint folder", e.Name())
			}
		})
	}
}

// TestCheckLossNearZeroStart: a loss that jumps many times over a running
// mean near zero but stays small is a working student (a run with one
// layer replaced stopped at step 2 with loss 0.026 over a mean of 1.5e-4);
// NaN, infinity and a large jump stop the run.
func TestCheckLossNearZeroStart(t *testing.T) {
	cases := []struct {
		loss    float64
		diverge bool
	}{
		{0.026, false},
		{0.9, false},
		{5, true},
		{math.NaN(), true},
		{math.Inf(1), true},
	}
	for _, c := range cases {
		r := &trainer{opts: Options{LR: 1e-3}, step: 1, lossMean: 1.5e-4}
		err := r.checkLoss(c.loss, &checkpointer{})
		if got := errors.Is(err, ErrDiverged); got != c.diverge {
			t.Errorf("loss %g over mean 1.5e-4: diverged %v, want %v (%v)", c.loss, got, c.diverge, err)
		}
	}
}
