package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/pipeline"
)

// budgetFlags are compress's flags for automatic rank allocation and for
// the candidates beyond square layers.
func budgetFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "budget", Usage: "choose each layer's rank automatically so that the model keeps the fraction `RES=F` of the original's parameters or MACs (params=0.6, macs=0.5), by per-layer sensitivity measured on --data images (else on weight reconstruction error)"},
		&cli.IntFlag{Name: "budget-samples", Value: pipeline.DefaultBudgetSamples, Usage: "calibration images `N` on which --budget measures each layer's sensitivity"},
		&cli.BoolFlag{Name: "include-nonsquare", Usage: "also replace 1x1 convolutions whose input and output widths differ (MobileNetV2's expand/project layers) by plain low-rank factors (residual none); the rank ratio applies to min(C_in, C_out)"},
	}
}

// budgetFrom reads --budget and --budget-samples: nil without a budget.
// The caller sets the data and threads.
func budgetFrom(c *cli.Context, multiple int) (*pipeline.BudgetOptions, error) {
	spec := c.String("budget")
	if spec == "" {
		if c.IsSet("budget-samples") {
			return nil, fmt.Errorf("--budget-samples needs --budget")
		}
		return nil, nil
	}
	budget, err := pipeline.ParseBudget(spec)
	if err != nil {
		return nil, fmt.Errorf("--budget: %w", err)
	}
	for _, f := range []string{"rank", "rank-ratio", "energy"} {
		if c.IsSet(f) {
			return nil, fmt.Errorf("--budget chooses the ranks; drop --%s (use --layer-rank and --exclude to fix single layers)", f)
		}
	}
	if n := c.Int("budget-samples"); n < 1 {
		return nil, fmt.Errorf("--budget-samples %d must be at least 1", n)
	}
	return &pipeline.BudgetOptions{Target: budget, Multiple: multiple, Samples: c.Int("budget-samples"),
		Batch: c.Int("batch"), Seed: c.Int64("data-seed"), Threads: c.Int("threads")}, nil
}

// budgetNote is the line compress prints about the allocation.
func budgetNote(r *pipeline.Result) string {
	a := r.Allocation
	return fmt.Sprintf("budget:    %s met at %.4f (%d of %d layers replaced; %s sensitivity, predicted loss %.4g)",
		a.Budget, a.Fraction, a.Replaced(), len(a.Layers), a.Metric, a.Loss)
}
