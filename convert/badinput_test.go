package convert

import (
	"context"
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/svd"
)

// TestBadInputCorpusAccounting is the accounting part of the hostile-input
// corpus (issue 11, case 8): a model whose input is declared 1x3x2³⁰x2³⁰
// made Inspect print MACs of −3891110078048105984. Counts are computed here
// exactly with big integers from the by-hand formulas of
// TestInspectCountsByHand, and every count lprconv reports must equal the
// exact value when it fits in int64 and math.MaxInt64 (saturated) when it
// does not: never negative, never wrapped.
func TestBadInputCorpusAccounting(t *testing.T) {
	sat := func(x *big.Int) int64 {
		if !x.IsInt64() {
			return math.MaxInt64
		}
		return x.Int64()
	}
	mul := func(v ...int64) *big.Int {
		p := big.NewInt(1)
		for _, x := range v {
			p.Mul(p, big.NewInt(x))
		}
		return p
	}
	for _, tc := range []struct {
		name string
		side int64 // input height and width
	}{
		{"1x3x2^30x2^30", 1 << 30},
		{"1x3x2^20x2^20", 1 << 20}, // large but every count fits
		{"1x3x2^31x2^31", 1 << 31},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, outs := tinyNet()
			m := b.model(13, []int64{1, 3, tc.side, tc.side}, outs...)
			s, err := Inspect(m, ShapeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			p := tc.side / 2 * (tc.side / 2) // pixels after the stride-2 stem
			want := []*big.Int{
				mul(8, p, 3, 9), // stem 3x3, 3->8
				mul(8, p, 1, 9), // depthwise 3x3
				mul(8, p, 8),    // pointwise 8->8
				mul(6, p, 8),    // 1x1 8->6
				mul(6, p),       // BatchNormalization
				mul(5, 6),       // Gemm
			}
			if len(s.Layers) != len(want) {
				t.Fatalf("%d layers, want %d", len(s.Layers), len(want))
			}
			total := new(big.Int)
			for i, w := range want {
				total.Add(total, w)
				if got := s.Layers[i].MACs; got != sat(w) {
					t.Errorf("layer %d (%s): MACs %d, want %d (exact %s)", i, s.Layers[i].Op, got, sat(w), w)
				}
			}
			if s.MACs != sat(total) {
				t.Errorf("total MACs %d, want %d (exact %s)", s.MACs, sat(total), total)
			}
			if s.CandidateMACs != sat(want[2]) {
				t.Errorf("candidate MACs %d, want %d", s.CandidateMACs, sat(want[2]))
			}
			if s.Params != 475 {
				t.Errorf("params %d, want 475 (weights do not depend on the input size)", s.Params)
			}
			saturated := !total.IsInt64()
			warned := false
			for _, w := range s.Warnings {
				if strings.Contains(w, "saturated") {
					warned = true
				}
			}
			if warned != saturated {
				t.Errorf("saturation warning %v, want %v: %q", warned, saturated, s.Warnings)
			}

			// The plan's per-layer and total figures follow the same rule.
			plan, err := NewPlan(context.Background(), m, svd.Policy{Rank: 2}, svd.ResidualKind{}, PlanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if plan.Replaced() != 1 {
				t.Fatalf("plan replaces %d layers, want 1", plan.Replaced())
			}
			l := plan.Layers[0]
			if l.MACsBefore != sat(want[2]) {
				t.Errorf("layer MACs before %d, want %d", l.MACsBefore, sat(want[2]))
			}
			// Rank 2, no residual: 2·(8+8) per pixel.
			if after := sat(mul(2, 16, p)); l.MACsAfter != after {
				t.Errorf("layer MACs after %d, want %d", l.MACsAfter, after)
			}
			if _, macs := l.CostAt(2); macs != l.MACsAfter || macs < 0 {
				t.Errorf("CostAt(2) MACs %d, want %d", macs, l.MACsAfter)
			}
			if plan.MACsBefore != s.MACs || plan.MACsAfter < 0 {
				t.Errorf("plan MACs %d -> %d; want %d -> non-negative", plan.MACsBefore, plan.MACsAfter, s.MACs)
			}
			if !saturated {
				afterTotal := new(big.Int).Sub(total, want[2])
				afterTotal.Add(afterTotal, mul(2, 16, p))
				if plan.MACsAfter != afterTotal.Int64() {
					t.Errorf("plan MACs after %d, want %s", plan.MACsAfter, afterTotal)
				}
			}
		})
	}
}
