package svd

import (
	"regexp"
	"strings"
	"testing"
)

func TestPolicyChoose(t *testing.T) {
	// Spectrum with squared values 4, 3, 2, 1 (total 10).
	spec := []float64{2, 1.7320508075688772, 1.4142135623730951, 1}
	exclude := []*regexp.Regexp{regexp.MustCompile(`^conv1$`), regexp.MustCompile(`dw`)}
	cases := []struct {
		name          string
		p             Policy
		layer         string
		out, in       int
		spectrum      []float64
		resParams     int
		wantRank      int
		wantReplace   bool
		wantExcluded  bool
		reasonContain string
	}{
		{"fixed", Policy{Rank: 32}, "a", 128, 128, nil, 0, 32, true, false, "fixed rank 32"},
		{"fixed capped", Policy{Rank: 500, Force: true}, "a", 128, 64, nil, 0, 64, true, false, "forced"},
		{"ratio exact", Policy{Ratio: 0.25}, "a", 128, 128, nil, 0, 32, true, false, "ratio"},
		{"ratio rounds up", Policy{Ratio: 0.25}, "a", 58, 58, nil, 0, 15, true, false, ""},
		{"ratio of min side", Policy{Ratio: 0.5}, "a", 64, 32, nil, 0, 16, true, false, ""},
		{"ratio multiple", Policy{Ratio: 0.25, Multiple: 16}, "a", 116, 116, nil, 0, 32, true, false, "multiple of 16"},
		{"multiple capped", Policy{Ratio: 0.25, Multiple: 16, Force: true}, "a", 20, 20, nil, 0, 16, true, false, ""},
		{"energy 0.7", Policy{Energy: 0.7}, "a", 4, 4, spec, 0, 2, false, false, "does not shrink"},
		{"energy 0.4", Policy{Energy: 0.4}, "a", 40, 4, spec, 0, 1, true, false, ""},
		{"energy 0.41", Policy{Energy: 0.41}, "a", 40, 4, spec, 0, 2, true, false, ""},
		{"energy 1", Policy{Energy: 1}, "a", 40, 4, spec, 0, 4, false, false, ""},
		{"override", Policy{Ratio: 0.25, Overrides: map[string]int{"b": 7}}, "b", 128, 128, nil, 0, 7, true, false, "override"},
		{"override not rounded", Policy{Ratio: 0.25, Multiple: 16, Overrides: map[string]int{"b": 7}}, "b", 128, 128, nil, 0, 7, true, false, ""},
		{"other layer keeps ratio", Policy{Ratio: 0.25, Overrides: map[string]int{"b": 7}}, "c", 128, 128, nil, 0, 32, true, false, ""},
		{"excluded exact", Policy{Ratio: 0.25, Exclude: exclude}, "conv1", 128, 128, nil, 0, 0, false, true, "excluded"},
		{"exclude is a pattern", Policy{Ratio: 0.25, Exclude: exclude}, "block3_dw", 128, 128, nil, 0, 0, false, true, "dw"},
		{"not excluded", Policy{Ratio: 0.25, Exclude: exclude}, "conv10", 128, 128, nil, 0, 32, true, false, ""},
		{"excluded beats override", Policy{Ratio: 0.25, Exclude: exclude, Overrides: map[string]int{"conv1": 4}}, "conv1", 128, 128, nil, 0, 0, false, true, ""},
		// Break-even: 2·r·C + residual < C² means r < C/2 for none.
		{"below break-even", Policy{Rank: 63}, "a", 128, 128, nil, 0, 63, true, false, ""},
		{"at break-even", Policy{Rank: 64}, "a", 128, 128, nil, 0, 64, false, false, "does not shrink"},
		{"residual params count", Policy{Rank: 63}, "a", 128, 128, nil, 128 * 9, 63, false, false, "does not shrink"},
		{"force", Policy{Rank: 64, Force: true}, "a", 128, 128, nil, 0, 64, true, false, "forced"},
		{"overrides only", Policy{Overrides: map[string]int{"x": 3}}, "y", 16, 16, nil, 0, 0, false, false, "no override"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, d, err := c.p.Choose(c.layer, c.out, c.in, c.spectrum, c.resParams)
			if err != nil {
				t.Fatal(err)
			}
			if r != c.wantRank || d.Replace != c.wantReplace || d.Excluded != c.wantExcluded {
				t.Errorf("got rank %d replace %v excluded %v (%s), want %d %v %v", r, d.Replace, d.Excluded, d.Reason, c.wantRank, c.wantReplace, c.wantExcluded)
			}
			if !strings.Contains(d.Reason, c.reasonContain) {
				t.Errorf("reason %q does not mention %q", d.Reason, c.reasonContain)
			}
			if d.DenseParams != c.out*c.in {
				t.Errorf("DenseParams %d", d.DenseParams)
			}
			if r > 0 && d.Params != r*(c.in+c.out)+c.resParams {
				t.Errorf("Params %d, want %d", d.Params, r*(c.in+c.out)+c.resParams)
			}
		})
	}
}

func TestPolicyErrors(t *testing.T) {
	cases := []struct {
		name    string
		p       Policy
		out, in int
		spec    []float64
		want    string
	}{
		{"nothing set", Policy{}, 8, 8, nil, "set one of"},
		{"two set", Policy{Rank: 2, Ratio: 0.5}, 8, 8, nil, "exclusive"},
		{"negative rank", Policy{Rank: -1}, 8, 8, nil, "rank -1"},
		{"ratio zero-ish", Policy{Ratio: -0.1}, 8, 8, nil, "ratio"},
		{"ratio above 1", Policy{Ratio: 1.5}, 8, 8, nil, "(0, 1]"},
		{"energy above 1", Policy{Energy: 1.01}, 8, 8, nil, "energy"},
		{"negative multiple", Policy{Rank: 2, Multiple: -16}, 8, 8, nil, "multiple"},
		{"bad override", Policy{Rank: 2, Overrides: map[string]int{"a": 0}}, 8, 8, nil, "override"},
		{"override too big", Policy{Rank: 2, Overrides: map[string]int{"a": 9}}, 8, 8, nil, "exceeds"},
		{"energy without spectrum", Policy{Energy: 0.9}, 8, 8, nil, "singular values"},
		{"unsorted spectrum", Policy{Energy: 0.9}, 8, 8, []float64{1, 2}, "decreasing"},
		{"bad shape", Policy{Rank: 2}, 0, 8, nil, "positive"},
		{"nil pattern", Policy{Rank: 2, Exclude: []*regexp.Regexp{nil}}, 8, 8, nil, "nil"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := c.p.Choose("a", c.out, c.in, c.spec, 0)
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

// TestPolicyWithSpectrum ties the energy policy to Spectrum.
func TestPolicyWithSpectrum(t *testing.T) {
	n := 64
	s := expSpectrum(n, 0.1)
	w := withSpectrum(newRand(31), n, n, s)
	spec, err := Spectrum(w, n, n, KindNone, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, d, err := Policy{Energy: 0.9}.Choose("x", n, n, spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The rank must keep >= 90% energy and one less must not.
	if e := 1 - eckartYoung(s, r)*eckartYoung(s, r); e < 0.9-1e-6 {
		t.Errorf("rank %d keeps %.4f", r, e)
	}
	if e := 1 - eckartYoung(s, r-1)*eckartYoung(s, r-1); e >= 0.9+1e-6 {
		t.Errorf("rank %d - 1 already keeps %.4f", r, e)
	}
	if !d.Replace {
		t.Errorf("decision %+v", d)
	}
}
