package rankalloc

import (
	"fmt"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/svd"
)

// LatencyTable holds the measured costs of a latency budget, in one unit
// of time (e.g. nanoseconds) at one batch size.
//
// The model's latency at a choice of ranks is predicted additively:
//
//	T(r) = Whole - Σ_l Layers[l][0] + Σ_l Layers[l][r_l]
//
// that is the original's measured time with each candidate's time alone
// (Layers[l][0], the original layer) swapped for its module's time alone
// at the chosen rank. Whole - Σ_l Layers[l][0] is the time of everything
// that is not a candidate.
type LatencyTable struct {
	// Whole is the original model's measured time.
	Whole int64
	// Layers maps a candidate's name to its time alone by rank: 0 is the
	// original layer, r > 0 its module at rank r. A rank missing from
	// the table is not offered (Allocate fails if a rank the user fixed
	// is missing).
	Layers map[string]map[int]int64
}

// cost returns the time of layer name at rank r.
func (t *LatencyTable) cost(name string, r int) (int64, bool) {
	c, ok := t.Layers[name][r]
	return c, ok
}

// TimedRanks returns the ranks at which a latency budget needs layer l
// timed (besides 0, the original layer): its fixed rank when the user's
// selection fixes one (none for a kept layer), else the ranks the
// allocator may offer (multiples of Multiple up to the parameter
// break-even; see offeredRanks).
func (o Options) TimedRanks(l *convert.LayerPlan) []int {
	if r, fixed := o.fixedRank(l.Name); fixed {
		if r > 0 {
			return []int{r}
		}
		return nil
	}
	return o.offeredRanks(l)
}

// check verifies that t has what Allocate needs.
func (t *LatencyTable) check(budget Budget) error {
	if t == nil || t.Whole <= 0 {
		return fmt.Errorf("budget %s: no measured latency table (the caller must time the layers in a runtime)", budget)
	}
	return nil
}

// AtRank returns l replaced at rank r by zero factors of the module's
// shapes: what costs (parameters, MACs, time) depend on, not values.
func AtRank(l convert.LayerPlan, r int) convert.LayerPlan {
	out, in := l.Channels, l.InputChannels()
	f := &svd.Factors{Rank: r, In: in, Out: out, Residual: l.Residual, A: make([]float32, r*in), B: make([]float32, out*r)}
	switch l.Residual.Type {
	case svd.Diag:
		f.Diag = make([]float32, out)
	case svd.Depthwise:
		f.Diag = make([]float32, out)
		f.Taps = make([]float32, out*l.Residual.K*l.Residual.K)
	}
	l.Replace, l.Rank, l.Factors = true, r, f
	return l
}

// ShapedPlan returns base (the plan Allocate was given) with the chosen
// layers replaced at their ranks by zero factors (AtRank): convert.Apply
// makes of it a model with the allocation's shapes, for counting or
// timing.
func (a *Allocation) ShapedPlan(base *convert.Plan) *convert.Plan {
	plan := *base
	plan.Layers = append([]convert.LayerPlan(nil), base.Layers...)
	for i := range plan.Layers {
		if r := a.Layers[i].Rank; r > 0 {
			plan.Layers[i] = AtRank(plan.Layers[i], r)
		}
	}
	return &plan
}
