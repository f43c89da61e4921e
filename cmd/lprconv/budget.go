package main

import (
	"context"
	"fmt"
	"regexp"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/rankalloc"
	"github.com/lprconv/lprconv/svd"
)

// budgetFlags are compress's flags for automatic rank allocation and for
// the candidates beyond square layers.
func budgetFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "budget", Usage: "choose each layer's rank automatically so that the model keeps the fraction `RES=F` of the original's parameters or MACs (params=0.6, macs=0.5), by per-layer sensitivity measured on --data images (else on weight reconstruction error)"},
		&cli.IntFlag{Name: "budget-samples", Value: rankalloc.DefaultSamples, Usage: "calibration images `N` on which --budget measures each layer's sensitivity"},
		&cli.BoolFlag{Name: "include-nonsquare", Usage: "also replace 1x1 convolutions whose input and output widths differ (MobileNetV2's expand/project layers) by plain low-rank factors (residual none); the rank ratio applies to min(C_in, C_out)"},
	}
}

// configureBudget reads --include-nonsquare and --budget; with a budget it
// adds a step before planning that measures sensitivities and replaces the
// rank policy by the allocated per-layer ranks.
func configureBudget(c *cli.Context, opts *compressOptions) error {
	usage := func(format string, a ...any) error {
		return cli.Exit(fmt.Sprintf("compress: "+format, a...), 2)
	}
	opts.Candidates.NonSquare = c.Bool("include-nonsquare")
	spec := c.String("budget")
	if spec == "" {
		if c.IsSet("budget-samples") {
			return usage("--budget-samples needs --budget")
		}
		return nil
	}
	budget, err := rankalloc.ParseBudget(spec)
	if err != nil {
		return usage("--budget: %v", err)
	}
	for _, f := range []string{"rank", "rank-ratio", "energy"} {
		if c.IsSet(f) {
			return usage("--budget chooses the ranks; drop --%s (use --layer-rank and --exclude to fix single layers)", f)
		}
	}
	if n := c.Int("budget-samples"); n < 1 {
		return usage("--budget-samples %d must be at least 1", n)
	}
	user := opts.Policy
	kept := map[string]string{} // layer -> why the allocation keeps it
	opts.BeforePlan = append(opts.BeforePlan, func(ctx context.Context, r *compressResult, o *compressOptions) error {
		a, err := allocateRanks(ctx, c, budget, r, o)
		if err != nil {
			return err
		}
		for _, l := range a.Layers {
			switch {
			case l.Rank > 0 || userExcluded(user, l.Name):
			case l.Fixed && o.ChannelAlign > 1 && (l.Out%o.ChannelAlign != 0 || l.In%o.ChannelAlign != 0):
				kept[l.Name] = fmt.Sprintf("%d -> %d channels are not multiples of --channel-align %d", l.In, l.Out, o.ChannelAlign)
			case l.Fixed:
				kept[l.Name] = fmt.Sprintf("kept by --budget: no rank (multiple of %d) makes it smaller", max(1, user.Multiple))
			default:
				kept[l.Name] = "kept by --budget: replacing it would cost more fidelity per saved " + budget.Resource.String()
			}
		}
		return nil
	})
	// The allocation keeps layers through exact-name exclusions; say why
	// in the plan instead of showing the patterns.
	opts.AfterPlan = append(opts.AfterPlan, func(ctx context.Context, r *compressResult) error {
		for i := range r.Plan.Layers {
			if l := &r.Plan.Layers[i]; kept[l.Name] != "" && !l.Replace {
				l.Excluded, l.Reason = false, kept[l.Name]
			}
		}
		return nil
	})
	return nil
}

// userExcluded reports whether one of the user's --exclude patterns
// matches the layer.
func userExcluded(p svd.Policy, name string) bool {
	for _, re := range p.Exclude {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

// allocateRanks measures sensitivities, allocates ranks for the budget and
// sets them as the policy.
func allocateRanks(ctx context.Context, c *cli.Context, budget rankalloc.Budget, r *compressResult, o *compressOptions) (*rankalloc.Allocation, error) {
	ro := rankalloc.Options{Base: o.Policy, Residual: o.Residual, Threads: c.Int("threads"),
		Samples: c.Int("budget-samples"), Batch: c.Int("batch"),
		Plan: planOptions(o)}
	if c.String("data") != "" {
		in, err := evaluate.ModelInput(r.Original)
		if err != nil {
			return nil, fmt.Errorf("budget: %w", err)
		}
		spec, err := dataSpecFrom(c, in)
		if err != nil {
			return nil, cli.Exit("compress: "+err.Error(), 2)
		}
		src, err := dataset.Open(spec.Path, dataset.OpenOptions{Split: spec.Split, Labels: spec.Labels})
		if err != nil {
			return nil, err
		}
		defer src.Close()
		idx := dataset.Indices(src.Len())
		if spec.Limit > 0 {
			idx = dataset.Random(idx, spec.Limit, c.Int64("data-seed"))
		}
		idx = dataset.Random(idx, min(ro.Samples, len(idx)), c.Int64("data-seed"))
		batch := ro.Batch
		if in.Batch > 0 {
			batch = in.Batch
		}
		l, err := dataset.NewLoader(src, idx, spec.Pre, dataset.LoaderOptions{BatchSize: batch, Workers: 2, Prefetch: 2})
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ro.Data = l
	}
	var prog *progress
	ro.Progress = func(done, total int) {
		if prog == nil {
			prog = newProgress(o.Log, "sensitivity", "runs", total)
		}
		prog.update(done, "")
	}
	if o.Log != nil {
		fmt.Fprintf(o.Log, "measuring per-layer sensitivity (%s) for budget %s\n", ro.Metric(), budget)
	}
	a, err := rankalloc.Run(ctx, r.Original, budget, ro)
	prog.finish()
	if err != nil {
		return nil, cli.Exit(fmt.Sprintf("compress: --budget %s: %v", budget, err), 1)
	}
	p := a.Policy()
	// The user's exclusions come first so that the plan names their
	// patterns; --force lets forced ranks through.
	p.Exclude = append(append([]*regexp.Regexp(nil), o.Policy.Exclude...), p.Exclude...)
	p.Force = o.Policy.Force
	o.Policy = p
	r.Notes = append(r.Notes, fmt.Sprintf("budget:    %s met at %.4f (%d of %d layers replaced; %s sensitivity, predicted loss %.4g)",
		budget, a.Fraction, a.Replaced(), len(a.Layers), a.Metric, a.Loss))
	return a, nil
}

// planOptions are the convert.PlanOptions that compress plans with.
func planOptions(o *compressOptions) convert.PlanOptions {
	return convert.PlanOptions{Shapes: o.Shapes, SVD: o.SVD, Workers: o.Workers, Candidates: o.Candidates, ChannelAlign: o.ChannelAlign}
}
