package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/ortapi"
	"github.com/lprconv/lprconv/rankalloc"
	"github.com/lprconv/lprconv/svd"
)

// runLatencyBudget compresses the MobileNetV1 fixture with --budget
// latency=f (multiple 16, weight sensitivity).
func runLatencyBudget(t *testing.T, f float64, lat *Latency) (*Result, error) {
	t.Helper()
	path, _ := fixture(t)
	out := filepath.Join(t.TempDir(), "out.onnx")
	return Run(context.Background(), Options{In: path, Out: out, Residual: svd.KindDiag,
		Plan:   convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4},
		Budget: &BudgetOptions{Target: Budget{Resource: LatencyResource, Fraction: f}, Multiple: 16},
		Tool:   "test", Latency: lat,
		// The cost model's checks time allocations with the residual folds
		// that the budget's base factors allow; with relabeled channels the
		// written model's own factors (at the allocated ranks) can fold a
		// different set, which this exact cost model would see. The given
		// order (no fold on this fixture) keeps checked and written graphs
		// alike.
		Relabel: RelabelOff})
}

// TestLatencyBudgetCostModel: with a cost model standing in for ONNX
// Runtime (whose whole-model cost is exactly the original's minus the
// layers' isolated differences), the allocation's prediction equals the
// whole model measured after, both are within the budget, every kept
// layer is in the plan with the allocator's reason, and tighter budgets
// replace no fewer layers.
func TestLatencyBudgetCostModel(t *testing.T) {
	prevReplaced := -1
	for _, f := range []float64{0.95, 0.9, 0.85} {
		timer := &costTimer{perNode: 200, perWeight: 1}
		r, err := runLatencyBudget(t, f, &Latency{Batches: []int64{1, 8}, timer: timer})
		if err != nil {
			t.Fatalf("latency=%g: %v", f, err)
		}
		lb := r.Latency.Budget
		if lb == nil || !lb.Measured {
			t.Fatalf("latency=%g: budget report %+v", f, lb)
		}
		if lb.Batch != 1 || lb.Target != f || lb.Timings == 0 {
			t.Errorf("latency=%g: batch %d, target %g, %d timings", f, lb.Batch, lb.Target, lb.Timings)
		}
		if lb.Predicted > f || math.Abs(lb.Achieved-lb.Predicted) > 1e-6 {
			t.Errorf("latency=%g: predicted %.6f, achieved %.6f", f, lb.Predicted, lb.Achieved)
		}
		if r.Latency.Planned {
			t.Errorf("latency=%g: latency-aware planning ran after the budget's allocation", f)
		}
		for i, l := range r.Plan.Layers {
			a := r.Allocation.Layers[i]
			if l.Name != a.Name || l.Rank != a.Rank && l.Replace || l.Replace != (a.Rank > 0) {
				t.Errorf("latency=%g: plan %s rank %d (replace %v), allocation %s rank %d", f, l.Name, l.Rank, l.Replace, a.Name, a.Rank)
			}
		}
		if r.Replaced < prevReplaced {
			t.Errorf("latency=%g: %d layers replaced, fewer than at a larger budget (%d)", f, r.Replaced, prevReplaced)
		}
		prevReplaced = r.Replaced
	}
}

// TestLatencyBudgetNeedsRuntime: without a runtime a latency budget fails
// at once with one line naming the flags.
func TestLatencyBudgetNeedsRuntime(t *testing.T) {
	for _, tc := range []struct {
		name string
		lat  *Latency
	}{
		{"no latency", nil},
		{"no library", &Latency{Unavailable: "load libonnxruntime.so:\nno such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runLatencyBudget(t, 0.8, tc.lat)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, errNoRuntimeForBudget) || strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error %q", msg)
			}
		})
	}
}

// TestLatencyBudgetORT runs --budget latency=0.9 (or what is reachable) on the MobileNetV1
// fixture in ONNX Runtime and checks invariants only (no timings): the
// allocation is feasible by its own table, the JSON reports the achieved
// ratio, and the written model's layers are the allocation's.
func TestLatencyBudgetORT(t *testing.T) {
	lib := testutil.RequireORT(t)
	rt, err := ortapi.Open(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	// The fixture's small layers save little in ONNX Runtime: when 0.9
	// cannot be met, ask for halfway between the smallest achievable
	// fraction and 1 (then 1, which keeping every layer meets).
	f := 0.9
	r, err := runLatencyBudget(t, f, &Latency{Runtime: rt, Batches: []int64{1}, Threads: 1})
	for _, next := range []func(*rankalloc.InfeasibleError) float64{
		func(inf *rankalloc.InfeasibleError) float64 { return (1 + inf.Smallest) / 2 },
		func(*rankalloc.InfeasibleError) float64 { return 1 },
	} {
		var inf *rankalloc.InfeasibleError
		if !errors.As(err, &inf) {
			break
		}
		f = next(inf)
		t.Logf("%v; trying latency=%.4g", err, f)
		r, err = runLatencyBudget(t, f, &Latency{Runtime: rt, Batches: []int64{1}, Threads: 1})
	}
	if err != nil {
		t.Fatal(err)
	}
	a := r.Allocation
	if a == nil || a.Predicted > a.Target || a.Budget.Resource != rankalloc.Latency {
		t.Fatalf("allocation %+v", a)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Latency struct {
			Budget *struct {
				Target   float64  `json:"target"`
				Measured bool     `json:"measured"`
				Achieved *float64 `json:"achieved_ratio"`
				Timings  int      `json:"timings"`
			} `json:"budget"`
		} `json:"latency"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	jb := back.Latency.Budget
	if jb == nil || jb.Target != f || jb.Timings == 0 {
		t.Fatalf("latency budget in JSON: %+v", jb)
	}
	if r.Replaced > 0 && (!jb.Measured || jb.Achieved == nil || *jb.Achieved <= 0) {
		t.Errorf("%d layers replaced but no achieved ratio in JSON: %+v", r.Replaced, jb)
	}
	for i, l := range r.Plan.Layers {
		if l.Replace != (a.Layers[i].Rank > 0) {
			t.Errorf("%s: replace %v, allocated rank %d", l.Name, l.Replace, a.Layers[i].Rank)
		}
	}
}

// TestLatencyBudgetKeepsSensitive: with the cost model, making one layer
// that a latency budget replaces a million times more sensitive (through
// the shared sensitivity cache) keeps it, and the budget is still met by
// the other layers.
func TestLatencyBudgetKeepsSensitive(t *testing.T) {
	const f = 0.7
	path, _ := fixture(t)
	run := func(cache *Sensitivities) *Result {
		t.Helper()
		r, err := Run(context.Background(), Options{In: path, Residual: svd.KindDiag,
			Plan:   convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4},
			Budget: &BudgetOptions{Target: Budget{Resource: LatencyResource, Fraction: f}, Multiple: 16, Cache: cache},
			Tool:   "test", Latency: &Latency{Batches: []int64{1}, timer: &costTimer{perNode: 20, perWeight: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	plain := run(nil)
	ro := rankalloc.Options{Multiple: 16, Residual: svd.KindDiag, Plan: convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4},
		Random: rankalloc.DefaultRandom}
	base, err := rankalloc.BasePlan(context.Background(), plain.Original, ro)
	if err != nil {
		t.Fatal(err)
	}
	sens, err := rankalloc.Measure(context.Background(), plain.Original, base, ro)
	if err != nil {
		t.Fatal(err)
	}
	// The hot layer: the replaced layer of least predicted loss (the
	// cheapest to replace before).
	hot, least := "", math.Inf(1)
	for _, l := range plain.Allocation.Layers {
		if l.Rank > 0 && l.Loss < least {
			hot, least = l.Name, l.Loss
		}
	}
	if hot == "" || plain.Replaced < 2 {
		t.Fatalf("latency=%g replaced %d layers; want at least 2", f, plain.Replaced)
	}
	for i := range sens {
		if sens[i].Name == hot {
			loss := make([]float64, len(sens[i].Loss))
			for k, v := range sens[i].Loss {
				loss[k] = 1e6*v + 1
			}
			sens[i].Loss = loss
		}
	}
	cache := &Sensitivities{}
	if _, _, err := cache.get(context.Background(), sensKey{svd.KindDiag, rankalloc.MetricRandom}, func() (*convert.Plan, []rankalloc.Sensitivity, error) { return base, sens, nil }); err != nil {
		t.Fatal(err)
	}
	r := run(cache)
	for _, l := range r.Allocation.Layers {
		if l.Name == hot && l.Rank != 0 {
			t.Errorf("%s, made the most sensitive, replaced at rank %d", hot, l.Rank)
		}
	}
	if lb := r.Latency.Budget; lb.Predicted > f || lb.Achieved > f {
		t.Errorf("predicted %.4f, achieved %.4f, budget %g", lb.Predicted, lb.Achieved, f)
	}
}

// TestLatencyBudgetCorrects: when the whole model costs more than the
// layers alone predict (the cost model charges every module's Add in a
// whole model only), the allocation is measured, found over the budget,
// and allocated again for a lower fraction until the whole model meets
// the budget (within budgetSlack).
func TestLatencyBudgetCorrects(t *testing.T) {
	const f = 0.85
	timer := &costTimer{perNode: 20, perWeight: 1, perModule: 6000}
	r, err := runLatencyBudget(t, f, &Latency{Batches: []int64{1}, timer: timer})
	if err != nil {
		t.Fatal(err)
	}
	lb := r.Latency.Budget
	if len(lb.Checks) < 2 || lb.Checks[0].Measured <= f+budgetSlack {
		t.Fatalf("checks %+v: want a first allocation measured over %g, then another", lb.Checks, f)
	}
	last := lb.Checks[len(lb.Checks)-1]
	if !lb.Measured || lb.Achieved > f+budgetSlack || math.Abs(lb.Achieved-last.Measured) > 1e-9 {
		t.Errorf("achieved %.4f (measured %v), last check %+v, budget %g", lb.Achieved, lb.Measured, last, f)
	}
	if r.Allocation.BudgetText != "latency=0.85" {
		t.Errorf("allocation budget %q", r.Allocation.BudgetText)
	}
}

// TestLatencyBudgetRaises: when the whole model measures well under what
// the layers alone predict (the cost model credits every module's Add in a
// whole model, as fastform's rewrites make the written model faster), the
// allocation is made again for a higher fraction, and the result is the
// allocation for the largest fraction that measured within the budget.
func TestLatencyBudgetRaises(t *testing.T) {
	const f = 0.85
	timer := &costTimer{perNode: 20, perWeight: 1, perModule: -9000}
	r, err := runLatencyBudget(t, f, &Latency{Batches: []int64{1}, timer: timer})
	if err != nil {
		t.Fatal(err)
	}
	lb := r.Latency.Budget
	if len(lb.Checks) < 2 || lb.Checks[0].Measured >= f-budgetRaise {
		t.Fatalf("checks %+v: want a first allocation measured more than %g under %g, then another", lb.Checks, budgetRaise, f)
	}
	best := -1.0
	for _, c := range lb.Checks {
		if c.Measured <= f+budgetSlack {
			best = math.Max(best, c.Predicted)
		}
	}
	if r.Allocation.Fraction != best || best <= lb.Checks[0].Predicted {
		t.Errorf("allocation for %.4f; checks %+v: want the largest fraction measured within the budget, above the first", r.Allocation.Fraction, lb.Checks)
	}
	if !lb.Measured || lb.Achieved > f+budgetSlack {
		t.Errorf("achieved %.4f (measured %v), budget %g", lb.Achieved, lb.Measured, f)
	}
	t.Logf("checks %+v, kept the allocation for %.4f", lb.Checks, r.Allocation.Fraction)
}
