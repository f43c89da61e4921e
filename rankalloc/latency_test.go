package rankalloc

import (
	"errors"
	"strings"
	"testing"
)

// syntheticTable times every candidate of base as if a 1x1 convolution's
// time were its weight count plus a fixed overhead per node (the module
// has three), and the rest of the model took rest.
func syntheticTable(names []string, rest int64, ranks func(i int) []int, in, out func(i int) int) *LatencyTable {
	const node = 2000
	tab := &LatencyTable{Whole: rest, Layers: map[string]map[int]int64{}}
	for i, n := range names {
		c0 := int64(in(i)*out(i)) + node
		tab.Layers[n] = map[int]int64{0: c0}
		tab.Whole += c0
		for _, r := range ranks(i) {
			tab.Layers[n][r] = int64(r*(in(i)+out(i))+out(i)) + 3*node
		}
	}
	return tab
}

// TestAllocateLatency: with a latency table, the allocation's predicted
// latency (the table's sum) is at most the budget, the layer with by far
// the largest sensitivity is kept whenever the others can meet the
// budget alone, ranks not in the table are never chosen, and a table
// without a module faster than its layer keeps that layer with a reason.
func TestAllocateLatency(t *testing.T) {
	opts := weightOptions(16)
	opts.Plan.ChannelAlign = 4
	m := loadFixture(t, "mobilenetv1.onnx")
	base, sens := prepared(t, "mobilenetv1.onnx", opts)
	var names []string
	for _, s := range sens {
		names = append(names, s.Name)
	}
	if len(names) < 3 {
		t.Fatalf("want at least 3 candidates, have %d", len(names))
	}
	layerOf := func(i int) int {
		for k := range base.Layers {
			if base.Layers[k].Name == names[i] {
				return k
			}
		}
		t.Fatalf("no layer %q", names[i])
		return -1
	}
	in := func(i int) int { return base.Layers[layerOf(i)].InputChannels() }
	out := func(i int) int { return base.Layers[layerOf(i)].Channels }
	ranks := func(i int) []int { return opts.TimedRanks(&base.Layers[layerOf(i)]) }
	tab := syntheticTable(names, 50000, ranks, in, out)
	// The hot layer: the one that saves most, made very sensitive.
	hot, hotSave := 0, int64(0)
	saveOf := func(n string) int64 {
		best := int64(0)
		for r, c := range tab.Layers[n] {
			if r > 0 {
				best = max(best, tab.Layers[n][0]-c)
			}
		}
		return best
	}
	var allSave int64
	for i, n := range names {
		s := saveOf(n)
		allSave += s
		if s > hotSave {
			hot, hotSave = i, s
		}
	}
	hotSens := append([]Sensitivity(nil), sens...)
	hs := hotSens[hot]
	hs.Loss = append([]float64(nil), hs.Loss...)
	for k := range hs.Loss {
		hs.Loss[k] = hs.Loss[k]*1e6 + 1e3
	}
	hotSens[hot] = hs
	// Reachable without the hot layer: halfway between 1 and the smallest
	// fraction the other layers reach.
	without := float64(tab.Whole-(allSave-hotSave)) / float64(tab.Whole)
	for _, tc := range []struct {
		name    string
		f       float64
		sens    []Sensitivity
		keepHot bool
	}{
		{"weights sensitivity", (1 + without) / 2, sens, false},
		{"hot layer kept", (1 + without) / 2, hotSens, true},
		{"tight", without + 0.3*(float64(tab.Whole-allSave)/float64(tab.Whole)-without), sens, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			o.Latency = tab
			b := Budget{Resource: Latency, Fraction: tc.f}
			a, err := Allocate(m, base, tc.sens, b, o)
			if err != nil {
				t.Fatal(err)
			}
			var sum int64 = tab.Whole
			for _, l := range a.Layers {
				c, ok := tab.Layers[l.Name][l.Rank]
				if !ok && l.Fixed && l.Rank == 0 {
					continue // no rank offered: not timed
				}
				if !ok {
					t.Fatalf("%s: rank %d not in the table", l.Name, l.Rank)
				}
				if l.Latency != c {
					t.Errorf("%s: latency %d, table %d", l.Name, l.Latency, c)
				}
				sum += c - tab.Layers[l.Name][0]
			}
			if sum != a.Predicted || sum > a.Target || a.Target != int64(float64(tab.Whole)*tc.f) {
				t.Errorf("predicted %d (sum %d), target %d of %d", a.Predicted, sum, a.Target, tab.Whole)
			}
			if a.Replaced() == 0 {
				t.Errorf("nothing replaced at %s", b)
			}
			if tc.keepHot && a.Layers[layerOf(hot)].Rank != 0 {
				t.Errorf("hot layer %s at rank %d, want kept", names[hot], a.Layers[layerOf(hot)].Rank)
			}
		})
	}
	t.Run("infeasible", func(t *testing.T) {
		o := opts
		o.Latency = tab
		_, err := Allocate(m, base, sens, Budget{Resource: Latency, Fraction: 0.5 * float64(tab.Whole-allSave) / float64(tab.Whole)}, o)
		var inf *InfeasibleError
		if !errors.As(err, &inf) {
			t.Fatalf("err = %v, want infeasible", err)
		}
	})
	t.Run("no faster module", func(t *testing.T) {
		slow := &LatencyTable{Whole: tab.Whole, Layers: map[string]map[int]int64{}}
		for n, rs := range tab.Layers {
			slow.Layers[n] = map[int]int64{}
			for r, c := range rs {
				slow.Layers[n][r] = c
				if n == names[0] && r > 0 {
					slow.Layers[n][r] = rs[0] + 1
				}
			}
		}
		o := opts
		o.Latency = slow
		a, err := Allocate(m, base, sens, Budget{Resource: Latency, Fraction: 0.999}, o)
		if err != nil {
			t.Fatal(err)
		}
		l := a.Layers[layerOf(0)]
		if l.Rank != 0 || !strings.Contains(l.Reason, "no offered rank is faster") {
			t.Errorf("%s: rank %d, reason %q", l.Name, l.Rank, l.Reason)
		}
	})
	t.Run("no table", func(t *testing.T) {
		if _, err := Allocate(m, base, sens, Budget{Resource: Latency, Fraction: 0.8}, opts); err == nil {
			t.Fatal("no error without a latency table")
		}
	})
}
