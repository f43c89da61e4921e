package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/ortapi"
	"github.com/lprconv/lprconv/rankalloc"
)

// errNoRuntimeForBudget is the error of a latency budget without a runtime.
const errNoRuntimeForBudget = "--budget latency needs ONNX Runtime (--ort-lib or ONNXRUNTIME_LIB)"

// minLayerTiming is the least time budget of one (layer, rank) timing of
// a latency budget's table; each still stops once the comparison is clear
// (or after its minimum rounds).
const minLayerTiming = 30 * time.Millisecond

// LatencyBudget reports a --budget latency=F run: the table the ranks were
// chosen from (at Batch) and the whole model measured after.
type LatencyBudget struct {
	// Target is F; Batch the batch size the table was timed at (the first
	// --latency-batch).
	Target float64 `json:"target"`
	Batch  int64   `json:"batch"`
	// OriginalMs is the whole original model's time, LayersMs the sum of
	// its candidate layers' times alone (the remainder OriginalMs -
	// LayersMs is the rest of the model, taken as unchanged).
	OriginalMs float64 `json:"original_ms"`
	LayersMs   float64 `json:"layers_ms"`
	// Predicted is the ratio the table predicts for the chosen ranks.
	Predicted float64 `json:"predicted_ratio"`
	// Achieved is the whole compressed model measured against the
	// original at Batch (with its 95% interval); Measured is false when
	// the final measurement failed or nothing was replaced.
	Measured     bool    `json:"measured"`
	Achieved     float64 `json:"achieved_ratio,omitempty"`
	AchievedLow  float64 `json:"achieved_ratio_low,omitempty"`
	AchievedHigh float64 `json:"achieved_ratio_high,omitempty"`
	// Checks are the whole models of the allocations measured against
	// the original at Batch before the final one was chosen (see
	// latencyRun.correct), with the fraction each was allocated for.
	Checks []BudgetCheck `json:"checks,omitempty"`
	// Timings is the number of (layer, rank) pairs timed and Seconds the
	// wall time the table and the checks took.
	Timings int     `json:"timings"`
	Seconds float64 `json:"seconds"`
}

// BudgetCheck is one whole-model measurement of an allocation.
type BudgetCheck struct {
	// Fraction is what the allocation was made for, Predicted what the
	// table predicted and Measured the whole model against the original.
	Fraction  float64 `json:"fraction"`
	Predicted float64 `json:"predicted_ratio"`
	Measured  float64 `json:"measured_ratio"`
}

// budgetSlack is how far a whole-model check may measure over a latency
// budget without a new allocation: half the noise allowance, as checks
// of one model differ by about 0.01-0.02 (bench/compress/README.md), and
// chasing that noise lowers the fidelity for nothing.
const budgetSlack = latencyTolerance / 2

// maxBudgetChecks bounds the whole-model checks of a latency budget.
const maxBudgetChecks = 3

// budgetRaise is how far under a latency budget a whole-model check must
// measure for correct to allocate again for a higher fraction (fewer or
// larger modules, a smaller loss): the written model can be faster than
// the table predicts, as fastform's rewrites speed up layers no module
// replaces (on ShuffleNetV2 x1.0 the original alone rewritten measures
// 0.82-0.88 of itself).
const budgetRaise = 2 * latencyTolerance

// correct checks allocation a of a latency budget on the whole model (a
// with zero factors of its shapes, timed against the original at the
// table's batch size, as written) and allocates again, at most
// maxBudgetChecks measurements in all: for the fraction lowered by the
// gap while the measured ratio exceeds the budget by more than
// budgetSlack, and raised by the gap while it lies more than budgetRaise
// under it. It returns, of the allocations measured within the budget,
// the one allocated for the largest fraction (the smallest predicted
// loss), else the last one measured; the allocation keeps the budget's
// text.
func (lr *latencyRun) correct(ctx context.Context, o *Options, base *convert.Plan, a *rankalloc.Allocation, ro rankalloc.Options) (*rankalloc.Allocation, error) {
	rep := lr.res.Budget
	if rep == nil {
		return a, nil
	}
	lr.resume()
	defer lr.pause()
	start := time.Now()
	defer func() { rep.Seconds += time.Since(start).Seconds() }()
	target, f := a.Budget, a.Budget.Fraction
	var best *rankalloc.Allocation // measured within the budget, largest fraction
	defer func() {
		if best != nil && best != a {
			o.logf(StageBudget, "keeping the allocation for %.4f, the largest measured within the budget", best.Fraction)
		}
	}()
	for check := 0; check < maxBudgetChecks && a.Replaced() > 0; check++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		shaped := a.ShapedPlan(base)
		for i := range shaped.Layers {
			shaped.Layers[i] = unitScales(shaped.Layers[i], lr.folded)
		}
		m, err := convert.Apply(lr.original, shaped)
		if err != nil {
			return nil, fmt.Errorf("check the allocation: %w", err)
		}
		if m, err = asWritten(o, m); err != nil {
			return nil, fmt.Errorf("check the allocation: %w", err)
		}
		enc, err := onnxio.Encode(m)
		if err != nil {
			return nil, fmt.Errorf("check the allocation: %w", err)
		}
		t, err := lr.timer.time(lr.orig, enc, timing{Batch: rep.Batch, Budget: lr.budget() / 10, Warmup: 1, MinRounds: 3, Sets: 1, Fill: true})
		if err != nil {
			return nil, fmt.Errorf("check the allocation at batch %d: %w", rep.Batch, err)
		}
		got := t.Ratio.Median
		rep.Checks = append(rep.Checks, BudgetCheck{Fraction: f, Predicted: a.Fraction, Measured: got})
		o.logf(StageBudget, "allocation for %.4f: predicted %.4f, measured %.4f", f, a.Fraction, got)
		within := got <= target.Fraction+budgetSlack
		if within && (best == nil || a.Fraction > best.Fraction) {
			best = a
		}
		if check == maxBudgetChecks-1 || within && got >= target.Fraction-budgetRaise {
			break
		}
		// Move the fraction by the gap between measured and predicted (up
		// when the model measured faster than predicted), a little low, as
		// the measurement is noisy.
		next := f - (got - a.Fraction) - 0.002
		if next >= 1 || next == f {
			break
		}
		f = next
		na, err := rankalloc.Allocate(lr.original, base, a.Sensitivity, rankalloc.Budget{Resource: rankalloc.Latency, Fraction: f}, ro)
		if err != nil {
			var inf *rankalloc.InfeasibleError
			if errors.As(err, &inf) {
				break // the budget's own allocation stands; the final note says it is over
			}
			return nil, err
		}
		na.Budget, na.BudgetText = target, target.String()
		a = na
	}
	if best != nil {
		return best, nil
	}
	return a, nil
}

// needsRuntime returns the one-line error of a latency budget that cannot
// be measured, or nil.
func needsRuntime(o *Options) error {
	if o.Budget == nil || o.Budget.Target.Resource != rankalloc.Latency {
		return nil
	}
	l := o.Latency
	if l != nil && (l.Runtime != nil || l.timer != nil) {
		return nil
	}
	if l != nil && l.Unavailable != "" {
		return fmt.Errorf("%s: %s", errNoRuntimeForBudget, oneLineError(fmt.Errorf("%s", l.Unavailable)))
	}
	return fmt.Errorf("%s", errNoRuntimeForBudget)
}

// latencyTable times what a latency budget's dynamic program needs, at
// the first measured batch size: the whole original model (against
// itself, interleaved), and every candidate of base alone (Conv -> Relu)
// against its module alone at each rank the allocator may offer
// (rankalloc.Options.TimedRanks), in increasing order, stopping at a
// layer's break-even: after two ranks in a row whose module is slower
// than the layer by more than the tolerance. Times are in nanoseconds at
// that batch size; a layer timed at a smaller batch (isolatedBatch) is
// scaled up in proportion.
func (lr *latencyRun) latencyTable(ctx context.Context, o *Options, base *convert.Plan, ro rankalloc.Options) (*rankalloc.LatencyTable, error) {
	start := time.Now()
	b := lr.batches[0]
	shapes, err := convert.InferShapes(lr.original, o.Plan.Shapes)
	if err != nil {
		return nil, fmt.Errorf("infer shapes: %w", err)
	}
	n := 0
	for i := range base.Layers {
		n += len(ro.TimedRanks(&base.Layers[i]))
	}
	o.logf(StageBudget, "timing the original and %d (layer, rank) modules alone in %s at batch %d", n, lr.res.Runtime, b)
	whole, err := lr.timer.time(lr.orig, lr.orig, timing{Batch: b, Budget: lr.budget() * 2 / 10, Warmup: 1, MinRounds: 3, Sets: 1, Fill: true})
	if err != nil {
		return nil, fmt.Errorf("the original at batch %d: %w", b, err)
	}
	tab := &rankalloc.LatencyTable{Whole: int64((whole.Base + whole.Cand) / 2), Layers: map[string]map[int]int64{}}
	per := max(lr.budget()*3/10/time.Duration(max(n, 1)), minLayerTiming)
	// Modules whose residual the written model folds into the layer before
	// are timed folded (isolatedPair); truncating the base factors keeps
	// their scales, so a layer folds at every rank or at none.
	folded, err := foldedLayers(o, lr.original, base)
	if err != nil {
		return nil, err
	}
	lr.folded = folded
	rep := &LatencyBudget{Target: o.Budget.Target.Fraction, Batch: b, OriginalMs: float64(tab.Whole) / 1e6}
	for i := range base.Layers {
		l := &base.Layers[i]
		ranks := ro.TimedRanks(l)
		if len(ranks) == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, w := inputHW(shapes.Get(l.Input).Shape, l.Pixels)
		tb := isolatedBatch(l.MACsBefore, b)
		scale := float64(b) / float64(tb)
		costs := map[int]int64{}
		var layerTimes []time.Duration
		slower := 0
		for _, r := range ranks {
			layer, module, err := isolatedPair(lr.original, base.Residual, unitScales(rankalloc.AtRank(*l, r), folded), h, w, folded[l.Name])
			if err != nil {
				return nil, fmt.Errorf("layer %q alone at rank %d: %w", l.Name, r, err)
			}
			t, err := lr.timer.time(layer, module, timing{Batch: tb, Budget: per, Warmup: 1, Sets: 1})
			if err != nil {
				return nil, fmt.Errorf("layer %q alone at rank %d, batch %d: %w", l.Name, r, tb, err)
			}
			rep.Timings++
			layerTimes = append(layerTimes, t.Base)
			costs[r] = int64(float64(t.Cand) * scale)
			if t.Ratio.Median > 1+latencyTolerance {
				if slower++; slower == 2 {
					break
				}
			} else {
				slower = 0
			}
		}
		costs[0] = int64(float64(ortapi.Median(layerTimes)) * scale)
		rep.LayersMs += float64(costs[0]) / 1e6
		tab.Layers[l.Name] = costs
	}
	rep.Seconds = time.Since(start).Seconds()
	lr.res.Budget = rep
	lr.pause()
	o.logf(StageBudget, "timed %d (layer, rank) pairs in %.1f s: original %.3f ms, its candidates alone %.3f ms", rep.Timings, rep.Seconds, rep.OriginalMs, rep.LayersMs)
	return tab, nil
}

// reportBudget fills the budget's achieved ratio from the final
// measurement.
func (lr *latencyRun) reportBudget(a *rankalloc.Allocation) {
	rep := lr.res.Budget
	if rep == nil {
		return
	}
	if a != nil {
		rep.Predicted = a.Fraction
	}
	if !lr.res.Measured {
		return
	}
	for _, bl := range lr.res.Batches {
		if bl.Batch == rep.Batch {
			rep.Measured, rep.Achieved, rep.AchievedLow, rep.AchievedHigh = true, bl.Ratio, bl.RatioLow, bl.RatioHigh
		}
	}
	if rep.Measured && rep.Achieved > rep.Target+latencyTolerance {
		lr.res.Notes = append(lr.res.Notes, fmt.Sprintf("--budget latency=%g: the whole model measured %.3fx the original at batch %d, over the budget (predicted %.3f)", rep.Target, rep.Achieved, rep.Batch, rep.Predicted))
	}
}

// unitScales gives a replaced layer of rankalloc's zero factors (AtRank,
// ShapedPlan: shapes for timing, not values) diag scales of 1 where folded
// says the written model folds its residual, so that fastform folds it in
// the timed model too (a zero scale does not fold).
func unitScales(l convert.LayerPlan, folded map[string]bool) convert.LayerPlan {
	if !l.Replace || !folded[l.Name] || l.Factors == nil || l.Factors.Diag == nil {
		return l
	}
	f := *l.Factors
	f.Diag = make([]float32, len(l.Factors.Diag))
	for i := range f.Diag {
		f.Diag[i] = 1
	}
	l.Factors = &f
	return l
}
