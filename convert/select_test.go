package convert

import (
	"regexp"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/svd"
)

func TestSelectionDecide(t *testing.T) {
	// Spectrum with squared values 4, 3, 2, 1 (total 10).
	spec := []float64{2, 1.7320508075688772, 1.4142135623730951, 1}
	exclude := []*regexp.Regexp{regexp.MustCompile(`^conv1$`), regexp.MustCompile(`dw`)}
	ranks := func(kv ...any) map[string]LayerRank {
		m := map[string]LayerRank{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = LayerRank{Rank: kv[i+1].(int)}
		}
		return m
	}
	cases := []struct {
		name          string
		rule          svd.Policy
		sel           Selection
		layer         string
		out, in       int
		spectrum      []float64
		resParams     int
		wantRank      int
		wantReplace   bool
		wantExcluded  bool
		reasonContain string
	}{
		{"fixed", svd.Policy{Rank: 32}, Selection{}, "a", 128, 128, nil, 0, 32, true, false, "fixed rank 32"},
		{"fixed capped", svd.Policy{Rank: 500}, Selection{Force: true}, "a", 128, 64, nil, 0, 64, true, false, "forced"},
		{"ratio exact", svd.Policy{Ratio: 0.25}, Selection{}, "a", 128, 128, nil, 0, 32, true, false, "ratio"},
		{"ratio multiple", svd.Policy{Ratio: 0.25, Multiple: 16}, Selection{}, "a", 116, 116, nil, 0, 32, true, false, "multiple of 16"},
		{"multiple capped", svd.Policy{Ratio: 0.25, Multiple: 16}, Selection{Force: true}, "a", 20, 20, nil, 0, 16, true, false, ""},
		{"energy 0.7", svd.Policy{Energy: 0.7}, Selection{}, "a", 4, 4, spec, 0, 2, false, false, "does not shrink"},
		{"energy 0.4", svd.Policy{Energy: 0.4}, Selection{}, "a", 40, 4, spec, 0, 1, true, false, ""},
		{"energy 1", svd.Policy{Energy: 1}, Selection{}, "a", 40, 4, spec, 0, 4, false, false, ""},
		{"override", svd.Policy{Ratio: 0.25}, Selection{Ranks: ranks("b", 7)}, "b", 128, 128, nil, 0, 7, true, false, "override"},
		{"override not rounded", svd.Policy{Ratio: 0.25, Multiple: 16}, Selection{Ranks: ranks("b", 7)}, "b", 128, 128, nil, 0, 7, true, false, ""},
		{"other layer keeps ratio", svd.Policy{Ratio: 0.25}, Selection{Ranks: ranks("b", 7)}, "c", 128, 128, nil, 0, 32, true, false, ""},
		{"excluded exact", svd.Policy{Ratio: 0.25}, Selection{Exclude: exclude}, "conv1", 128, 128, nil, 0, 0, false, true, "excluded"},
		{"exclude is a pattern", svd.Policy{Ratio: 0.25}, Selection{Exclude: exclude}, "block3_dw", 128, 128, nil, 0, 0, false, true, "dw"},
		{"not excluded", svd.Policy{Ratio: 0.25}, Selection{Exclude: exclude}, "conv10", 128, 128, nil, 0, 32, true, false, ""},
		{"excluded beats override", svd.Policy{Ratio: 0.25}, Selection{Exclude: exclude, Ranks: ranks("conv1", 4)}, "conv1", 128, 128, nil, 0, 0, false, true, ""},
		// Break-even: 2·r·C + residual < C² means r < C/2 for none.
		{"below break-even", svd.Policy{Rank: 63}, Selection{}, "a", 128, 128, nil, 0, 63, true, false, ""},
		{"at break-even", svd.Policy{Rank: 64}, Selection{}, "a", 128, 128, nil, 0, 64, false, false, "does not shrink"},
		{"residual params count", svd.Policy{Rank: 63}, Selection{}, "a", 128, 128, nil, 128 * 9, 63, false, false, "does not shrink"},
		{"force", svd.Policy{Rank: 64}, Selection{Force: true}, "a", 128, 128, nil, 0, 64, true, false, "forced"},
		{"ranks only", svd.Policy{}, Selection{Ranks: ranks("x", 3)}, "y", 16, 16, nil, 0, 0, false, false, "no rank rule"},
		{"nothing at all", svd.Policy{}, Selection{}, "y", 16, 16, nil, 0, 0, false, false, "no rank rule"},
		{"explicit keep", svd.Policy{Ratio: 0.25}, Selection{Ranks: map[string]LayerRank{"y": {Reason: "kept by the budget"}}}, "y", 16, 16, nil, 0, 0, false, false, "kept by the budget"},
		{"explicit keep, no reason", svd.Policy{Ratio: 0.25}, Selection{Ranks: ranks("y", 0)}, "y", 16, 16, nil, 0, 0, false, false, "rank is 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := c.sel.Decide(c.rule, c.layer, c.out, c.in, c.spectrum, c.resParams)
			if err != nil {
				t.Fatal(err)
			}
			if d.Rank != c.wantRank || d.Replace != c.wantReplace || d.Excluded != c.wantExcluded {
				t.Errorf("got rank %d replace %v excluded %v (%s), want %d %v %v", d.Rank, d.Replace, d.Excluded, d.Reason, c.wantRank, c.wantReplace, c.wantExcluded)
			}
			if !strings.Contains(d.Reason, c.reasonContain) {
				t.Errorf("reason %q does not mention %q", d.Reason, c.reasonContain)
			}
			if d.DenseParams != c.out*c.in {
				t.Errorf("DenseParams %d", d.DenseParams)
			}
			if d.Rank > 0 && d.Params != d.Rank*(c.in+c.out)+c.resParams {
				t.Errorf("Params %d, want %d", d.Params, d.Rank*(c.in+c.out)+c.resParams)
			}
		})
	}
}

func TestSelectionErrors(t *testing.T) {
	cases := []struct {
		name    string
		rule    svd.Policy
		sel     Selection
		out, in int
		want    string
	}{
		{"bad rank", svd.Policy{Rank: 2}, Selection{Ranks: map[string]LayerRank{"a": {Rank: -1}}}, 8, 8, "negative"},
		{"rank too big", svd.Policy{Rank: 2}, Selection{Ranks: map[string]LayerRank{"a": {Rank: 9}}}, 8, 8, "exceeds"},
		{"energy without spectrum", svd.Policy{Energy: 0.9}, Selection{}, 8, 8, "singular values"},
		{"bad shape", svd.Policy{Rank: 2}, Selection{}, 0, 8, "positive"},
		{"nil pattern", svd.Policy{Rank: 2}, Selection{Exclude: []*regexp.Regexp{nil}}, 8, 8, "nil"},
		{"bad rule", svd.Policy{Rank: 2, Ratio: 0.5}, Selection{}, 8, 8, "exclusive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.sel.Decide(c.rule, "a", c.out, c.in, nil, 0)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
	if _, err := ParseExclude([]string{"ok", "(bad"}); err == nil || !strings.Contains(err.Error(), "(bad") {
		t.Errorf("ParseExclude error %v", err)
	}
	res, err := ParseExclude([]string{"^a$", "b"})
	if err != nil || len(res) != 2 || !res[0].MatchString("a") {
		t.Errorf("ParseExclude = %v, %v", res, err)
	}
}
