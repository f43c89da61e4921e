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
		&cli.StringFlag{Name: "budget", Usage: "choose each layer's rank automatically so that the model keeps the fraction `RES=F` of the original's parameters, MACs or latency measured in ONNX Runtime (params=0.6, macs=0.5, latency=0.8), by per-layer sensitivity measured on --data images (else on weight reconstruction error; for latency, on the outputs for random inputs)"},
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
	if lb := latencyBudget(r); lb != nil {
		achieved := "not measured"
		if lb.Measured {
			achieved = fmt.Sprintf("%.3f [%.3f, %.3f]", lb.Achieved, lb.AchievedLow, lb.AchievedHigh)
		}
		return fmt.Sprintf("budget:    %s at batch %d: predicted %.4f, measured %s (%d of %d layers replaced; %s sensitivity, predicted loss %.4g; %d layer timings in %.1f s)",
			a.Budget, lb.Batch, a.Fraction, achieved, a.Replaced(), len(a.Layers), a.Metric, a.Loss, lb.Timings, lb.Seconds)
	}
	return fmt.Sprintf("budget:    %s met at %.4f (%d of %d layers replaced; %s sensitivity, predicted loss %.4g)",
		a.Budget, a.Fraction, a.Replaced(), len(a.Layers), a.Metric, a.Loss)
}

// latencyBudget returns the latency budget's report, or nil.
func latencyBudget(r *pipeline.Result) *pipeline.LatencyBudget {
	if r.Latency == nil {
		return nil
	}
	return r.Latency.Budget
}
