package rankalloc

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/svd"
)

func TestParseBudget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Budget
		err  bool
	}{
		{"params=0.6", Budget{Params, 0.6}, false},
		{"macs=0.5", Budget{MACs, 0.5}, false},
		{"MACs = 50%", Budget{MACs, 0.5}, false},
		{"0.75", Budget{Params, 0.75}, false},
		{"params=3/4", Budget{Params, 0.75}, false},
		{"params=1", Budget{Params, 1}, false},
		{"params=0", Budget{}, true},
		{"params=1.2", Budget{}, true},
		{"flops", Budget{}, true},
		{"size=0.5", Budget{}, true},
		{"params=x", Budget{}, true},
		{"latency=0.8", Budget{Latency, 0.8}, false},
		{"Latency = 80%", Budget{Latency, 0.8}, false},
		{"latency=0", Budget{}, true},
	} {
		got, err := ParseBudget(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseBudget(%q) error %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && (got.Resource != tc.want.Resource || math.Abs(got.Fraction-tc.want.Fraction) > 1e-12) {
			t.Errorf("ParseBudget(%q) = %v, want %v", tc.in, got, tc.want)
		}
		if !tc.err {
			if back, err := ParseBudget(got.String()); err != nil || back != got {
				t.Errorf("ParseBudget(%q.String() = %q) = %v, %v", tc.in, got.String(), back, err)
			}
		}
	}
}

func TestSensitivityAt(t *testing.T) {
	s := Sensitivity{Out: 64, In: 32, Ranks: []int{4, 8, 16}, Loss: []float64{0.8, 0.4, 0.2}}
	for _, tc := range []struct {
		r    int
		want float64
	}{{1, 0.8}, {4, 0.8}, {6, 0.6}, {8, 0.4}, {12, 0.3}, {16, 0.2}, {24, 0.1}, {32, 0}, {40, 0}} {
		if got := s.At(tc.r); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("At(%d) = %v, want %v", tc.r, got, tc.want)
		}
	}
}

// weightOptions measures sensitivities from the weights (fast, no images).
func weightOptions(multiple int) Options {
	return Options{Multiple: multiple, Residual: svd.KindDiag, Plan: convert.PlanOptions{SVD: svd.Options{Seed: 1}}}
}

// prepared measures the sensitivities of a fixture once.
func prepared(t *testing.T, name string, opts Options) (*convert.Plan, []Sensitivity) {
	t.Helper()
	m := loadFixture(t, name)
	base, err := BasePlan(context.Background(), m, opts)
	if err != nil {
		t.Fatal(err)
	}
	sens, err := Measure(context.Background(), m, base, opts)
	if err != nil {
		t.Fatal(err)
	}
	return base, sens
}

// TestAllocateMeetsBudget checks, for parameter and MAC budgets, that the
// rewritten model's total is at most the target and as close to it as
// the offered ranks allow (no layer can take its next larger option
// without exceeding it), that the policy reproduces the allocation
// through convert.NewPlan, and that the predicted loss never falls as the
// budget shrinks.
func TestAllocateMeetsBudget(t *testing.T) {
	for _, tc := range []struct {
		model    string
		multiple int
	}{{"mobilenetv1.onnx", 1}, {"mobilenetv1.onnx", 16}, {"shufflenetv2.onnx", 8}} {
		opts := weightOptions(tc.multiple)
		m := loadFixture(t, tc.model)
		base, sens := prepared(t, tc.model, opts)
		for _, res := range []Resource{Params, MACs} {
			t.Run(fmt.Sprintf("%s/m%d/%s", tc.model, tc.multiple, res), func(t *testing.T) {
				prevLoss := -1.0
				for _, f := range []float64{1, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7} {
					b := Budget{Resource: res, Fraction: f}
					a, err := Allocate(m, base, sens, b, opts)
					var inf *InfeasibleError
					if errors.As(err, &inf) {
						break
					}
					if err != nil {
						t.Fatalf("%s: %v", b, err)
					}
					got := a.Params
					if res == MACs {
						got = a.MACs
					}
					if got > a.Target || a.Target != int64(math.Floor(f*float64(a.Before))) {
						t.Fatalf("%s: total %d over the target %d", b, got, a.Target)
					}
					if a.Loss < prevLoss-1e-12 {
						t.Errorf("%s: predicted loss %.6g below the larger budget's %.6g", b, a.Loss, prevLoss)
					}
					prevLoss = a.Loss
					// Just under: the next larger option of any layer
					// would exceed the target.
					for i, l := range a.Layers {
						if l.Fixed {
							continue
						}
						cur := a.Layers[i]
						bl := &base.Layers[i]
						next := 0 // keep
						for _, r := range opts.offeredRanks(bl) {
							if r > cur.Rank {
								next = r
								break
							}
						}
						if cur.Rank == 0 {
							continue
						}
						p0, m0 := bl.CostAt(cur.Rank)
						p1, m1 := bl.CostAt(next)
						d := p1 - p0
						if res == MACs {
							d = m1 - m0
						}
						if d > 0 && got+d <= a.Target {
							t.Errorf("%s: layer %s could go from rank %d to %d (+%d) and stay within %d (total %d)", b, l.Name, cur.Rank, next, d, a.Target, got)
						}
					}
					// The selection reproduces the allocation.
					p, err := convert.NewPlan(context.Background(), m, svd.Policy{}, svd.KindDiag, convert.PlanOptions{SVD: svd.Options{Seed: 1}, Select: a.Selection(convert.Selection{})})
					if err != nil {
						t.Fatal(err)
					}
					if p.ParamsAfter != a.Params || p.MACsAfter != a.MACs {
						t.Errorf("%s: plan has %d params %d MACs, allocation says %d %d", b, p.ParamsAfter, p.MACsAfter, a.Params, a.MACs)
					}
					for i, l := range p.Layers {
						want := a.Layers[i].Rank
						if (want > 0) != l.Replace || (want > 0 && l.Rank != want) {
							t.Errorf("%s: layer %s planned rank %d replace %v, allocated %d", b, l.Name, l.Rank, l.Replace, want)
						}
					}
					if f == 1 && a.Replaced() != 0 {
						t.Errorf("budget 1 replaces %d layers", a.Replaced())
					}
				}
			})
		}
	}
}

// TestAllocateInfeasible asks for less than the smallest rank on offer
// reaches: the error must name that fraction, which equals the plan with
// every layer at its smallest offered rank (16).
func TestAllocateInfeasible(t *testing.T) {
	opts := weightOptions(16)
	m := loadFixture(t, "mobilenetv1.onnx")
	base, sens := prepared(t, "mobilenetv1.onnx", opts)
	_, err := Allocate(m, base, sens, Budget{Params, 0.1}, opts)
	var inf *InfeasibleError
	if !errors.As(err, &inf) {
		t.Fatalf("error %v, want an InfeasibleError", err)
	}
	smallest := plan(t, m, svd.Policy{Rank: 16})
	want := float64(smallest.ParamsAfter) / float64(smallest.ParamsBefore)
	if math.Abs(inf.Smallest-want) > 1e-9 {
		t.Errorf("smallest fraction %.6f, want %.6f", inf.Smallest, want)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("%.4f", want)) {
		t.Errorf("error %q does not name the smallest fraction %.4f", err, want)
	}
	// At exactly that fraction the budget is met.
	a, err := Allocate(m, base, sens, Budget{Params, want + 1e-9}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if a.Params != smallest.ParamsAfter {
		t.Errorf("at the smallest fraction: %d params, want %d", a.Params, smallest.ParamsAfter)
	}
}

// TestAllocateRespectsUserPolicy keeps excluded layers and overridden
// ranks as the user set them.
func TestAllocateRespectsUserPolicy(t *testing.T) {
	opts := weightOptions(16)
	ex, err := convert.ParseExclude([]string{"features\\.13"})
	if err != nil {
		t.Fatal(err)
	}
	opts.Plan.Select.Exclude = ex
	opts.Plan.Select.Ranks = map[string]convert.LayerRank{"/features/features.7/features.7.1/features.7.1.0/Conv": {Rank: 16}}
	m := loadFixture(t, "mobilenetv1.onnx")
	a, err := Run(context.Background(), m, Budget{Params, 0.8}, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range a.Layers {
		switch {
		case strings.Contains(l.Name, "features.13"):
			if !l.Fixed || l.Rank != 0 {
				t.Errorf("excluded layer %s: rank %d fixed %v", l.Name, l.Rank, l.Fixed)
			}
		case strings.Contains(l.Name, "features.7/"):
			if !l.Fixed || l.Rank != 16 {
				t.Errorf("overridden layer %s: rank %d fixed %v", l.Name, l.Rank, l.Fixed)
			}
		}
	}
	if a.Fraction > 0.8 {
		t.Errorf("fraction %.4f over 0.8", a.Fraction)
	}
}

// TestDataSensitivity checks the KL measurement on the fixture with
// BatchNormalization after its candidates: writing the low-rank weight
// into the original Conv (scaled back through the BatchNormalization)
// measures the same loss as running the rewritten model, and at full rank
// the loss vanishes.
func TestDataSensitivity(t *testing.T) {
	m := loadFixture(t, "mobilenetv1_bn.onnx")
	opts := weightOptions(16)
	opts.Data = images(t, "train", 64, DefaultBatch)
	opts.Samples = 64
	opts = opts.withDefaults()
	base, err := BasePlan(context.Background(), m, opts)
	if err != nil {
		t.Fatal(err)
	}
	var layers []*convert.LayerPlan
	for i := range base.Layers {
		if base.Layers[i].BatchNorm >= 0 && base.Layers[i].Channels <= 128 {
			layers = append(layers, &base.Layers[i])
		}
	}
	if len(layers) < 2 {
		t.Fatalf("%d candidates with a BatchNormalization, want 2 or more", len(layers))
	}
	layers = layers[:2]
	r, err := newRunner(m, base, layers, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	for _, l := range layers {
		if r.direct[l.Name] == nil {
			t.Fatalf("layer %s not substitutable", l.Name)
		}
		c := l.Channels
		for _, rank := range []int{16, c} {
			f, err := svd.Factorize(l.W, c, c, rank, l.Residual, svd.Options{Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			direct, err := r.loss(l, f)
			if err != nil {
				t.Fatal(err)
			}
			s := r.direct[l.Name]
			delete(r.direct, l.Name)
			rewritten, err := r.loss(l, f)
			r.direct[l.Name] = s
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s rank %d: KL %.6g (substituted) %.6g (rewritten)", l.Name, rank, direct, rewritten)
			if rank == c {
				if direct > 1e-6 || rewritten > 1e-6 {
					t.Errorf("%s at full rank: KL %.3g / %.3g, want ~0", l.Name, direct, rewritten)
				}
				continue
			}
			if direct <= 0 || math.Abs(direct-rewritten) > 1e-3*rewritten+1e-7 {
				t.Errorf("%s rank %d: KL %.6g substituted, %.6g rewritten", l.Name, rank, direct, rewritten)
			}
		}
	}
}

// TestAllocateNonSquare allocates ranks over MobileNetV2's expand and
// project layers (non-square candidates only) from weight errors; the
// policy reproduces the allocation through convert.NewPlan.
func TestAllocateNonSquare(t *testing.T) {
	if testing.Short() {
		testutil.Skip(t, "ImageNet-shaped MobileNetV2; run without -short")
	}
	m, err := onnxio.Load(testutil.ImageNetModel(t, "mobilenetv2.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	opts := weightOptions(16)
	opts.Plan.Candidates.NonSquare = true
	a, err := Run(context.Background(), m, Budget{Params, 0.8}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if a.Fraction > 0.8 || a.Fraction < 0.75 || a.Replaced() == 0 {
		t.Fatalf("fraction %.4f with %d layers replaced", a.Fraction, a.Replaced())
	}
	nonSquare := 0
	for _, l := range a.Layers {
		if l.Rank > 0 && l.In != l.Out {
			nonSquare++
		}
	}
	if nonSquare == 0 {
		t.Errorf("no non-square layer replaced")
	}
	po := opts.Plan
	po.Select = a.Selection(opts.Plan.Select)
	p, err := convert.NewPlan(context.Background(), m, svd.Policy{}, svd.KindDiag, po)
	if err != nil {
		t.Fatal(err)
	}
	if p.ParamsAfter != a.Params || p.Replaced() != a.Replaced() {
		t.Errorf("plan: %d params, %d replaced; allocation: %d, %d", p.ParamsAfter, p.Replaced(), a.Params, a.Replaced())
	}
}

func TestOfferedRanks(t *testing.T) {
	layer := func(out, in int, kind svd.ResidualKind) *convert.LayerPlan {
		l := &convert.LayerPlan{Residual: kind}
		l.Channels = out
		if in != out {
			l.InChannels = in
		}
		return l
	}
	for _, tc := range []struct {
		name     string
		l        *convert.LayerPlan
		multiple int
		force    bool
		align    int
		want     string
	}{
		{"diag m16", layer(64, 64, svd.KindDiag), 16, false, 0, "[16]"},
		{"align", layer(58, 58, svd.KindNone), 1, false, 4, "[]"},
		{"aligned", layer(60, 60, svd.KindNone), 16, false, 4, "[16]"},
		{"none m1", layer(8, 8, svd.KindNone), 0, false, 0, "[1 2 3]"},
		{"force", layer(4, 4, svd.KindNone), 0, true, 0, "[1 2 3 4]"},
		{"non-square", layer(32, 8, svd.KindNone), 1, false, 0, "[1 2 3 4 5 6]"},
	} {
		o := Options{Multiple: tc.multiple}
		o.Plan.Select.Force = tc.force
		o.Plan.ChannelAlign = tc.align
		if got := fmt.Sprint(o.offeredRanks(tc.l)); got != tc.want {
			t.Errorf("%s: offered %s, want %s", tc.name, got, tc.want)
		}
	}
}
