package svd

import (
	"strings"
	"testing"
)

// TestPolicyChoose checks the rank rules; the decisions built on them
// (exclusions, per-layer ranks, break-even, force) are tested in convert.
func TestPolicyChoose(t *testing.T) {
	// Spectrum with squared values 4, 3, 2, 1 (total 10).
	spec := []float64{2, 1.7320508075688772, 1.4142135623730951, 1}
	cases := []struct {
		name        string
		p           Policy
		out, in     int
		spectrum    []float64
		wantRank    int
		howContains string
	}{
		{"fixed", Policy{Rank: 32}, 128, 128, nil, 32, "fixed rank 32"},
		{"fixed capped", Policy{Rank: 500}, 128, 64, nil, 64, "fixed rank 500"},
		{"ratio exact", Policy{Ratio: 0.25}, 128, 128, nil, 32, "ratio"},
		{"ratio rounds up", Policy{Ratio: 0.25}, 58, 58, nil, 15, ""},
		{"ratio of min side", Policy{Ratio: 0.5}, 64, 32, nil, 16, ""},
		{"ratio multiple", Policy{Ratio: 0.25, Multiple: 16}, 116, 116, nil, 32, "multiple of 16"},
		{"multiple capped", Policy{Ratio: 0.25, Multiple: 16}, 20, 20, nil, 16, ""},
		{"energy 0.7", Policy{Energy: 0.7}, 4, 4, spec, 2, "energy 0.7"},
		{"energy 0.4", Policy{Energy: 0.4}, 40, 4, spec, 1, ""},
		{"energy 0.41", Policy{Energy: 0.41}, 40, 4, spec, 2, ""},
		{"energy 1", Policy{Energy: 1}, 40, 4, spec, 4, ""},
		{"no rule", Policy{}, 16, 16, nil, 0, ""},
		{"no rule, multiple", Policy{Multiple: 16}, 16, 16, nil, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, how, err := c.p.Choose(c.out, c.in, c.spectrum)
			if err != nil {
				t.Fatal(err)
			}
			if r != c.wantRank {
				t.Errorf("got rank %d (%s), want %d", r, how, c.wantRank)
			}
			if !strings.Contains(how, c.howContains) {
				t.Errorf("how %q does not mention %q", how, c.howContains)
			}
			if (r == 0) != !c.p.HasRule() {
				t.Errorf("rank %d with HasRule %v", r, c.p.HasRule())
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
		{"two set", Policy{Rank: 2, Ratio: 0.5}, 8, 8, nil, "exclusive"},
		{"negative rank", Policy{Rank: -1}, 8, 8, nil, "rank -1"},
		{"ratio zero-ish", Policy{Ratio: -0.1}, 8, 8, nil, "ratio"},
		{"ratio above 1", Policy{Ratio: 1.5}, 8, 8, nil, "(0, 1]"},
		{"energy above 1", Policy{Energy: 1.01}, 8, 8, nil, "energy"},
		{"negative multiple", Policy{Rank: 2, Multiple: -16}, 8, 8, nil, "multiple"},
		{"energy without spectrum", Policy{Energy: 0.9}, 8, 8, nil, "singular values"},
		{"unsorted spectrum", Policy{Energy: 0.9}, 8, 8, []float64{1, 2}, "decreasing"},
		{"bad shape", Policy{Rank: 2}, 0, 8, nil, "positive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := c.p.Choose(c.out, c.in, c.spec)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one mentioning %q", err, c.want)
			}
		})
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
	r, _, err := Policy{Energy: 0.9}.Choose(n, n, spec)
	if err != nil {
		t.Fatal(err)
	}
	// The rank must keep >= 90% energy and one less must not.
	if e := 1 - OptimalRelErr(s, r)*OptimalRelErr(s, r); e < 0.9-1e-6 {
		t.Errorf("rank %d keeps %.4f", r, e)
	}
	if e := 1 - OptimalRelErr(s, r-1)*OptimalRelErr(s, r-1); e >= 0.9+1e-6 {
		t.Errorf("rank %d - 1 already keeps %.4f", r, e)
	}
	if r < 1 || r >= n/2 {
		t.Errorf("rank %d of %d does not shrink the layer", r, n)
	}
}
