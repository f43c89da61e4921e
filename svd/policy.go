package svd

import (
	"errors"
	"fmt"
	"math"
)

// Policy is a rank rule: it chooses the rank of an out x in matrix from its
// shape and, for the energy rule, its singular values. At most one of Rank,
// Ratio and Energy is set; the zero Policy sets no rule (Choose gives rank
// 0). Which layers are replaced, exclusions, per-layer ranks and forcing
// belong to convert.Selection.
type Policy struct {
	// Rank is a fixed rank for every layer (>= 1), capped at min(out, in).
	Rank int
	// Ratio gives r = ceil(Ratio·min(out, in)), Ratio in (0, 1].
	Ratio float64
	// Energy gives the smallest r whose singular values keep the fraction
	// Energy (in (0, 1]) of the squared Frobenius norm of the factored matrix.
	Energy float64
	// Multiple rounds the rank up to a multiple of it (e.g. 16 for fast
	// runtime kernels), capped at min(out, in); 0 or 1 disables rounding.
	Multiple int
}

// Validate checks the policy values.
func (p Policy) Validate() error {
	set := 0
	if p.Rank != 0 {
		set++
		if p.Rank < 1 {
			return fmt.Errorf("rank policy: rank %d must be >= 1", p.Rank)
		}
	}
	if p.Ratio != 0 {
		set++
		if !(p.Ratio > 0 && p.Ratio <= 1) {
			return fmt.Errorf("rank policy: ratio %v must be in (0, 1]", p.Ratio)
		}
	}
	if p.Energy != 0 {
		set++
		if !(p.Energy > 0 && p.Energy <= 1) {
			return fmt.Errorf("rank policy: energy %v must be in (0, 1]", p.Energy)
		}
	}
	if set > 1 {
		return errors.New("rank policy: rank, ratio and energy are exclusive; set only one")
	}
	if p.Multiple < 0 {
		return fmt.Errorf("rank policy: multiple %d must not be negative", p.Multiple)
	}
	return nil
}

// HasRule reports whether one of Rank, Ratio and Energy is set.
func (p Policy) HasRule() bool { return p.Rank != 0 || p.Ratio != 0 || p.Energy != 0 }

// NeedsSpectrum reports whether Choose needs singular values (energy policy).
func (p Policy) NeedsSpectrum() bool { return p.Energy != 0 }

// Choose picks the rank of an out x in matrix, in [1, min(out, in)], and
// says how in words (e.g. "ratio 0.25, rounded up to a multiple of 16").
// spectrum holds the singular values of the matrix to be factored in
// decreasing order (see Spectrum); only the energy rule needs it. It
// returns rank 0 when the policy sets no rule.
func (p Policy) Choose(out, in int, spectrum []float64) (int, string, error) {
	if err := p.Validate(); err != nil {
		return 0, "", err
	}
	if out < 1 || in < 1 {
		return 0, "", fmt.Errorf("shape %dx%d must be positive", out, in)
	}
	c := min(out, in)
	var r int
	var how string
	switch {
	case p.Rank != 0:
		r, how = min(p.Rank, c), fmt.Sprintf("fixed rank %d", p.Rank)
	case p.Ratio != 0:
		r, how = int(math.Ceil(p.Ratio*float64(c)-1e-9)), fmt.Sprintf("ratio %g", p.Ratio)
	case p.Energy != 0:
		var err error
		if r, err = energyRank(spectrum, p.Energy); err != nil {
			return 0, "", err
		}
		how = fmt.Sprintf("energy %g", p.Energy)
	default:
		return 0, "", nil
	}
	r = max(1, min(r, c))
	if p.Multiple > 1 {
		r = min(c, (r+p.Multiple-1)/p.Multiple*p.Multiple)
		how += fmt.Sprintf(", rounded up to a multiple of %d", p.Multiple)
	}
	return r, how, nil
}

// energyRank returns the smallest r whose leading singular values keep the
// fraction e of Σ σ².
func energyRank(s []float64, e float64) (int, error) {
	if len(s) == 0 {
		return 0, errors.New("energy policy needs the singular values of the layer (see Spectrum)")
	}
	tot := 0.0
	for i, v := range s {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("singular value %d is %v", i, v)
		}
		if i > 0 && v > s[i-1]*(1+1e-12) {
			return 0, errors.New("singular values must be in decreasing order")
		}
		tot += v * v
	}
	if tot == 0 {
		return 1, nil
	}
	acc := 0.0
	for i, v := range s {
		acc += v * v
		if acc >= e*tot*(1-1e-12) {
			return i + 1, nil
		}
	}
	return len(s), nil
}
