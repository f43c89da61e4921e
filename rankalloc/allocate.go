package rankalloc

import (
	"context"
	"fmt"
	"math"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// buckets is the resolution of the dynamic program: the savings needed
// are counted in units of about 1/buckets of the largest possible savings.
const buckets = 20000

// LayerChoice is the allocator's decision for one candidate layer.
type LayerChoice struct {
	Name string `json:"name"`
	Out  int    `json:"out_channels"`
	In   int    `json:"in_channels"`
	// Rank is the chosen rank, 0 when the layer is kept.
	Rank int `json:"rank"`
	// Fixed marks layers whose decision the user's selection made
	// (exclusions, per-layer ranks) or that have no rank on offer.
	Fixed bool `json:"fixed,omitempty"`
	// Reason says why a layer that the user did not exclude is kept
	// (empty for replaced layers).
	Reason string `json:"reason,omitempty"`
	// Loss is the predicted loss of the layer at Rank (0 when kept).
	Loss float64 `json:"loss"`
	// Params and MACs are the layer's cost at Rank.
	Params int64 `json:"params"`
	MACs   int64 `json:"macs"`
	// Latency is the layer's measured time alone at Rank (latency
	// budgets only; the LatencyTable's unit).
	Latency int64 `json:"latency,omitempty"`
}

// Allocation is the outcome of Allocate.
type Allocation struct {
	Budget Budget `json:"-"`
	// BudgetText is Budget as ParseBudget reads it.
	BudgetText string `json:"budget"`
	// Metric says how the losses were measured (MetricKL, MetricWeights).
	Metric string `json:"metric"`
	// Before is the original model's total of the budgeted resource and
	// Target the most the compressed model may have.
	Before int64 `json:"before"`
	Target int64 `json:"target"`
	// Params and MACs are the totals of the model rewritten with the
	// chosen ranks (counted on the rewritten graph), Fraction the
	// budgeted one over Before.
	Params   int64   `json:"params"`
	MACs     int64   `json:"macs"`
	Fraction float64 `json:"fraction"`
	// Predicted is the budgeted total the allocation predicts: counted
	// on the rewritten graph for parameters and MACs, from the
	// LatencyTable for latency (Fraction is Predicted / Before).
	Predicted int64 `json:"predicted"`
	// Loss is the predicted total loss (the sum of the layers' losses).
	Loss   float64       `json:"predicted_loss"`
	Layers []LayerChoice `json:"layers"`
	// Sensitivity is what the losses were interpolated from.
	Sensitivity []Sensitivity `json:"sensitivity"`
}

// Selection returns the layer selection that makes convert.NewPlan (with
// no rank rule) replace exactly the chosen layers at their ranks: an
// explicit rank per layer, 0 with the reason for kept ones. The user's
// exclusions and Force are kept, so that the plan names their patterns.
func (a *Allocation) Selection(user convert.Selection) convert.Selection {
	s := convert.Selection{Exclude: user.Exclude, Force: user.Force, Ranks: map[string]convert.LayerRank{}}
	for _, l := range a.Layers {
		s.Ranks[l.Name] = convert.LayerRank{Rank: l.Rank, Reason: l.Reason}
	}
	return s
}

// Replaced returns the number of layers given a rank.
func (a *Allocation) Replaced() int {
	n := 0
	for _, l := range a.Layers {
		if l.Rank > 0 {
			n++
		}
	}
	return n
}

// Run measures the sensitivities of m's candidates and allocates ranks
// for the budget (Measure, then Allocate); it fails before measuring when
// the budget cannot be met. The caller plans with a.Selection(opts.Plan.Select)
// as the plan options' selection, no rank rule, and the same residual.
func Run(ctx context.Context, m *onnxpb.ModelProto, budget Budget, opts Options) (*Allocation, error) {
	if err := budget.Validate(); err != nil {
		return nil, err
	}
	base, err := BasePlan(ctx, m, opts)
	if err != nil {
		return nil, err
	}
	// Check that the budget can be met before measuring anything: with
	// every loss 0, Allocate fails only on an infeasible budget.
	var zero []Sensitivity
	for i := range base.Layers {
		l := &base.Layers[i]
		if _, fixed := opts.fixedRank(l.Name); !fixed {
			if rs := opts.offeredRanks(l); len(rs) > 0 {
				zero = append(zero, Sensitivity{Name: l.Name, Out: l.Channels, In: l.InputChannels(), Ranks: rs[:1], Loss: []float64{0}})
			}
		}
	}
	if _, err := Allocate(m, base, zero, budget, opts); err != nil {
		return nil, err
	}
	sens, err := Measure(ctx, m, base, opts)
	if err != nil {
		return nil, err
	}
	return Allocate(m, base, sens, budget, opts)
}

// option is one choice for a free layer.
type option struct {
	rank   int
	cost   int64 // budgeted resource at this rank
	saving int64 // cost before minus cost
	loss   float64
}

// Allocate chooses ranks for the layers of base (a plan of m listing every
// candidate, none replaced; Run makes it) from their sensitivities: the
// model's budgeted total stays at most budget.Fraction of the original's
// and the sum of the predicted losses is least. Layers without a
// sensitivity keep the decision of opts.Plan.Select (per-layer rank or kept). It
// returns an error naming the smallest achievable fraction when the
// budget cannot be met.
func Allocate(m *onnxpb.ModelProto, base *convert.Plan, sens []Sensitivity, budget Budget, opts Options) (*Allocation, error) {
	opts = opts.withDefaults()
	if err := budget.Validate(); err != nil {
		return nil, err
	}
	byName := map[string]*Sensitivity{}
	for i := range sens {
		byName[sens[i].Name] = &sens[i]
	}
	var missing error
	cost := func(l *convert.LayerPlan, r int) int64 {
		p, mac := l.CostAt(r)
		switch budget.Resource {
		case MACs:
			return mac
		case Latency:
			c, ok := opts.Latency.cost(l.Name, r)
			if !ok && missing == nil {
				missing = fmt.Errorf("budget %s: layer %q has no measured latency at rank %d", budget, l.Name, r)
			}
			return c
		}
		return p
	}
	before := base.ParamsBefore
	switch budget.Resource {
	case MACs:
		before = base.MACsBefore
	case Latency:
		if err := opts.Latency.check(budget); err != nil {
			return nil, err
		}
		before = opts.Latency.Whole
	}
	a := &Allocation{Budget: budget, BudgetText: budget.String(), Metric: opts.Metric(), Before: before, Sensitivity: sens}
	a.Target = int64(math.Floor(budget.Fraction * float64(before)))
	var fixedCost int64 = before // total minus what the free layers cost before
	var free []int               // indices into base.Layers
	var opts2 [][]option
	for i := range base.Layers {
		l := &base.Layers[i]
		ch := LayerChoice{Name: l.Name, Out: l.Channels, In: l.InputChannels()}
		s := byName[l.Name]
		if r, fixed := opts.fixedRank(l.Name); fixed || s == nil {
			ch.Fixed, ch.Rank = true, r
			if !fixed {
				ch.Rank = 0
			}
			if ch.Rank > 0 {
				fixedCost += cost(l, ch.Rank) - cost(l, 0)
			}
		} else {
			c0 := cost(l, 0)
			fixedCost -= c0
			os := []option{{rank: 0, cost: c0}}
			for _, r := range opts.offeredRanks(l) {
				if budget.Resource == Latency {
					if _, ok := opts.Latency.cost(l.Name, r); !ok {
						continue // not timed: not offered
					}
				}
				c := cost(l, r)
				if c >= c0 {
					continue // saves nothing of the budgeted resource
				}
				os = append(os, option{rank: r, cost: c, saving: c0 - c, loss: s.At(r)})
			}
			monotone(os)
			free = append(free, i)
			opts2 = append(opts2, os)
		}
		a.Layers = append(a.Layers, ch)
	}
	if missing != nil {
		return nil, missing
	}
	// The per-layer costs can miss shared tensors; correct the target by
	// what the rewritten graph shows and solve again (at most a few times).
	target := a.Target
	for attempt := 0; ; attempt++ {
		choice, loss, err := solve(opts2, before, fixedCost, target)
		if err != nil {
			return nil, err
		}
		a.Loss = loss
		got := fixedCost
		for k, i := range free {
			o := opts2[k][choice[k]]
			a.Layers[i].Rank, a.Layers[i].Loss = o.rank, o.loss
			got += o.cost
		}
		for i := range a.Layers {
			l := &a.Layers[i]
			l.Params, l.MACs = base.Layers[i].CostAt(l.Rank)
			l.Reason = keptReason(*l, budget, opts)
			if budget.Resource == Latency {
				l.Latency, _ = opts.Latency.cost(l.Name, l.Rank)
			}
		}
		for k, i := range free {
			if len(opts2[k]) == 1 && budget.Resource == Latency && a.Layers[i].Rank == 0 {
				a.Layers[i].Reason = "kept by --budget: no offered rank is faster in the runtime"
			}
		}
		if err := a.count(m, base, opts); err != nil {
			return nil, err
		}
		switch budget.Resource {
		case Params:
			got = a.Params
		case MACs:
			got = a.MACs
		}
		a.Predicted = got
		a.Fraction = float64(got) / float64(before)
		if got <= a.Target {
			return a, nil
		}
		if attempt == 3 {
			return nil, fmt.Errorf("budget %s: the chosen ranks give %d of %d %s (%.4f), over the budget; the model's shared tensors defeat the per-layer accounting", budget, got, before, budget.Resource, a.Fraction)
		}
		target -= got - a.Target
	}
}

// keptReason says why the allocation keeps layer l, or "" when it is
// replaced or the user excluded it.
func keptReason(l LayerChoice, budget Budget, opts Options) string {
	a := opts.Plan.ChannelAlign
	switch {
	case l.Rank > 0 || opts.Plan.Select.Excludes(l.Name):
		return ""
	case l.Fixed && a > 1 && (l.Out%a != 0 || l.In%a != 0):
		return fmt.Sprintf("%d -> %d channels are not multiples of --channel-align %d", l.In, l.Out, a)
	case l.Fixed:
		return fmt.Sprintf("kept by --budget: no rank (multiple of %d) makes it smaller", max(1, opts.Multiple))
	}
	return "kept by --budget: replacing it would cost more fidelity per saved " + budget.Resource.String()
}

// monotone makes the losses of a layer's options non-increasing in rank
// (a higher rank never predicts a larger loss than a lower one).
func monotone(os []option) {
	// os[0] is "keep" (loss 0); ranks follow in increasing order.
	for i := len(os) - 2; i >= 1; i-- {
		if os[i].loss < os[i+1].loss {
			os[i].loss = os[i+1].loss
		}
	}
}

// solve picks one option per layer so that fixedCost plus the chosen costs
// is at most target with the least total loss: a dynamic program over the
// savings, counted in units rounded down (so the real savings are never
// smaller than the counted ones). It then gives back savings that the
// budget does not need where that lowers the loss.
func solve(layers [][]option, before, fixedCost, target int64) ([]int, float64, error) {
	var maxSave, keepCost int64
	for _, os := range layers {
		best := int64(0)
		for _, o := range os {
			best = max(best, o.saving)
		}
		maxSave += best
		keepCost += os[0].cost
	}
	need := fixedCost + keepCost - target // savings required
	if need > maxSave {
		smallest := fixedCost + keepCost - maxSave
		return nil, 0, &InfeasibleError{Smallest: float64(smallest) / float64(before), Target: float64(target) / float64(before)}
	}
	choice := make([]int, len(layers))
	if need <= 0 {
		return choice, 0, nil
	}
	unit := max(1, (maxSave+buckets-1)/buckets)
	J := int((need + unit - 1) / unit) // counted savings needed
	inf := math.Inf(1)
	dp := make([]float64, J+1) // dp[j]: least loss with counted savings >= j
	for j := 1; j <= J; j++ {
		dp[j] = inf
	}
	pick := make([][]int32, len(layers))
	next := make([]float64, J+1)
	for k, os := range layers {
		pick[k] = make([]int32, J+1)
		for j := 0; j <= J; j++ {
			next[j] = inf
			for oi, o := range os {
				s := int(o.saving / unit)
				from := max(0, j-s)
				if v := dp[from] + o.loss; v < next[j] {
					next[j] = v
					pick[k][j] = int32(oi)
				}
			}
		}
		dp, next = next, dp
	}
	if math.IsInf(dp[J], 1) {
		// Rounding the savings down lost too much (the budget sits within
		// a few units of the smallest achievable): start from every layer
		// at its largest saving, which meets the budget, and let the loop
		// below give back what is not needed.
		for k, os := range layers {
			for oi, o := range os {
				if o.saving > os[choice[k]].saving {
					choice[k] = oi
				}
			}
		}
	} else {
		j := J
		for k := len(layers) - 1; k >= 0; k-- {
			oi := int(pick[k][j])
			choice[k] = oi
			j = max(0, j-int(layers[k][oi].saving/unit))
		}
	}
	// Spend leftover budget: move layers to cheaper-in-loss options
	// (higher ranks or keeping) while the real savings still suffice.
	saved := int64(0)
	for k, oi := range choice {
		saved += layers[k][oi].saving
	}
	for {
		bestK, bestO, bestGain := -1, -1, 0.0
		for k, os := range layers {
			cur := os[choice[k]]
			for oi, o := range os {
				if o.saving >= cur.saving || saved-cur.saving+o.saving < need {
					continue
				}
				// Any move that does not raise the loss is taken (each
				// lowers the savings, so the loop ends), the best first.
				if gain := cur.loss - o.loss; gain >= 0 && (bestK < 0 || gain > bestGain) {
					bestK, bestO, bestGain = k, oi, gain
				}
			}
		}
		if bestK < 0 {
			break
		}
		saved += layers[bestK][bestO].saving - layers[bestK][choice[bestK]].saving
		choice[bestK] = bestO
	}
	var loss float64
	for k, oi := range choice {
		loss += layers[k][oi].loss
	}
	return choice, loss, nil
}

// InfeasibleError reports a budget below the smallest achievable fraction.
type InfeasibleError struct {
	// Smallest is the smallest fraction of the original that the offered
	// ranks reach (every free layer at its cheapest rank); Target the
	// fraction asked for.
	Smallest, Target float64
}

// Error says which budget cannot be met and how far the ranks can go.
func (e *InfeasibleError) Error() string {
	return fmt.Sprintf("budget %.4g cannot be met: the smallest achievable fraction is %.4f (every layer at its smallest offered rank; lower --multiple or drop exclusions to go further)", e.Target, e.Smallest)
}

// count fills the totals from the rewritten graph: the chosen layers get
// zero factors of the chosen shapes (values do not change the counts).
func (a *Allocation) count(m *onnxpb.ModelProto, base *convert.Plan, opts Options) error {
	plan := a.ShapedPlan(base)
	out, err := convert.Apply(m, plan)
	if err != nil {
		return fmt.Errorf("allocation: %w", err)
	}
	s, err := convert.Inspect(out, opts.Plan.Shapes)
	if err != nil {
		return fmt.Errorf("allocation: inspect: %w", err)
	}
	a.Params, a.MACs = s.Params, s.MACs
	return nil
}
