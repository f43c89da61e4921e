package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/rankalloc"
	"github.com/lprconv/lprconv/svd"
)

// Sensitivities caches per-layer sensitivities, measured once per residual
// kind and metric (rankalloc.Options.Metric) and shared by every budget of
// that kind and metric. It is safe for concurrent
// use; the runs that share it must use the same model, data and options
// (other than the budget's target).
type Sensitivities struct {
	mu     sync.Mutex
	byKind map[sensKey]*measured
}

// sensKey is what a cached measurement depends on besides the shared
// model, data and options.
type sensKey struct {
	kind   svd.ResidualKind
	metric string
}

// measured is the measurement that budgets of one residual share.
type measured struct {
	once sync.Once
	base *convert.Plan
	sens []rankalloc.Sensitivity
	err  error
}

// get returns the measurement of kind, made by measure on first use. A
// cancelled measurement is dropped, so that the next caller tries again.
func (c *Sensitivities) get(ctx context.Context, kind sensKey, measure func() (*convert.Plan, []rankalloc.Sensitivity, error)) (*convert.Plan, []rankalloc.Sensitivity, error) {
	c.mu.Lock()
	if c.byKind == nil {
		c.byKind = map[sensKey]*measured{}
	}
	m := c.byKind[kind]
	if m == nil {
		m = &measured{}
		c.byKind[kind] = m
	}
	c.mu.Unlock()
	m.once.Do(func() { m.base, m.sens, m.err = measure() })
	if m.err != nil && ctx.Err() != nil {
		c.mu.Lock()
		if c.byKind[kind] == m {
			delete(c.byKind, kind)
		}
		c.mu.Unlock()
	}
	return m.base, m.sens, m.err
}

// allocate measures sensitivities (or takes them from the cache) and
// allocates ranks for the budget.
// A latency budget first times its table in lat (latencybudget.go);
// without images it measures sensitivities on random inputs
// (rankalloc.MetricRandom, see randomSensitivity).
func allocate(ctx context.Context, r *Result, opts *Options, lat *latencyRun) (*rankalloc.Allocation, error) {
	b := opts.Budget
	ro := rankalloc.Options{Multiple: b.Multiple, Residual: opts.Residual, Threads: b.Threads,
		Samples: b.Samples, Batch: b.Batch, Plan: opts.Plan}
	var latBase *convert.Plan
	if lat != nil {
		base, err := rankalloc.BasePlan(ctx, r.Original, ro)
		if err != nil {
			return nil, fmt.Errorf("--budget %s: find candidates: %w", b.Target, err)
		}
		if ro.Latency, err = lat.latencyTable(ctx, opts, base, ro); err != nil {
			return nil, fmt.Errorf("--budget %s: %w", b.Target, err)
		}
		latBase = base
		if b.Data == nil {
			ro.Random, ro.RandomSeed = randomSensitivity(b)
			if err := rankalloc.CheckRandom(r.Original, ro); err != nil {
				var c *rankalloc.ConstantOutputsError
				if !errors.As(err, &c) {
					return nil, fmt.Errorf("--budget %s: %w", b.Target, err)
				}
				ro.Random = 0
				note := fmt.Sprintf("--budget %s: %s; sensitivity by weight error instead (--data gives the KL divergence on images)", b.Target, oneLineError(c))
				opts.logf(StageBudget, "%s", note)
				lat.res.Notes = append(lat.res.Notes, note)
			}
		}
	}
	if b.Data != nil {
		in, err := evaluate.ModelInput(r.Original)
		if err != nil {
			return nil, fmt.Errorf("budget: %w", err)
		}
		// A seeded random choice, so that class-sorted folders give every
		// class a share.
		samples := ro.Samples
		if samples <= 0 {
			samples = DefaultBudgetSamples
		}
		idx := dataset.Random(b.Data.Indices, min(samples, len(b.Data.Indices)), b.Seed)
		batch := ro.Batch
		if in.Batch > 0 {
			batch = in.Batch
		} else if batch <= 0 {
			batch = rankalloc.DefaultBatch
		}
		l, err := dataset.NewLoader(b.Data.Source, idx, b.Data.Pre, dataset.LoaderOptions{BatchSize: batch,
			Workers: dataset.DefaultWorkers, Prefetch: dataset.DefaultPrefetch})
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ro.Data = l
	}
	ro.Progress = func(done, total int) {
		opts.emit(Event{Stage: StageBudget, Done: done, Total: total})
	}
	var a *rankalloc.Allocation
	var err error
	if b.Cache == nil {
		opts.logf(StageBudget, "measuring per-layer sensitivity (%s) for budget %s", ro.Metric(), b.Target)
		a, err = rankalloc.Run(ctx, r.Original, b.Target, ro)
	} else {
		base, sens, merr := b.Cache.get(ctx, sensKey{opts.Residual, ro.Metric()}, func() (*convert.Plan, []rankalloc.Sensitivity, error) {
			opts.logf(StageBudget, "measuring per-layer sensitivity (%s) of the %s residual", ro.Metric(), opts.Residual)
			base, err := rankalloc.BasePlan(ctx, r.Original, ro)
			if err != nil {
				return nil, nil, fmt.Errorf("find candidates: %w", err)
			}
			sens, err := rankalloc.Measure(ctx, r.Original, base, ro)
			if err != nil {
				return nil, nil, fmt.Errorf("measure sensitivity: %w", err)
			}
			return base, sens, nil
		})
		if err = merr; err == nil {
			a, err = rankalloc.Allocate(r.Original, base, sens, b.Target, ro)
		}
	}
	if err == nil && lat != nil {
		a, err = lat.correct(ctx, opts, latBase, a, ro)
	}
	opts.emit(Event{Stage: StageBudget, Finished: true})
	if err != nil {
		return nil, fmt.Errorf("--budget %s: %w", b.Target, err)
	}
	opts.logf(StageBudget, "budget %s met at %.4f (%d of %d layers replaced; %s sensitivity, predicted loss %.4g)",
		b.Target, a.Fraction, a.Replaced(), len(a.Layers), a.Metric, a.Loss)
	return a, nil
}

// randomSensitivity returns how many random inputs, and with which seed,
// a latency budget without images measures sensitivities on
// (rankalloc.MetricRandom): rankalloc.DefaultRandom, seeded by Seed.
//
// Why not the weight error, as parameter and MAC budgets use: a latency
// budget trades layers of very different cost in time, and the weight
// error cannot tell how much a layer's error reaches the outputs. On
// ImageNet-shaped MobileNetV1 at latency=0.8 it gave the last pointwise
// layer (the most expensive in time, and the one whose error reaches the
// outputs least attenuated) a lower rank than the uniform ratio of the
// same latency, and the budget's outputs followed the original's less
// closely (bench/compress/README.md). Random inputs are only a proxy for
// real images; --data gives the KL divergence on them instead.
func randomSensitivity(b *BudgetOptions) (int, uint64) {
	return rankalloc.DefaultRandom, uint64(b.Seed)
}
