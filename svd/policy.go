package svd

import (
	"errors"
	"fmt"
	"math"
	"regexp"
)

// Policy chooses the rank of each candidate layer. Exactly one of Rank,
// Ratio and Energy selects the base rank; Overrides, Exclude, Multiple and
// Force refine it.
type Policy struct {
	// Rank is a fixed rank for every layer (>= 1), capped at min(out, in).
	Rank int
	// Ratio gives r = ceil(Ratio·min(out, in)), Ratio in (0, 1].
	Ratio float64
	// Energy gives the smallest r whose singular values keep the fraction
	// Energy (in (0, 1]) of the squared Frobenius norm of the factored matrix.
	Energy float64
	// Multiple rounds the base rank up to a multiple of it (e.g. 16 for fast
	// runtime kernels), capped at min(out, in); 0 or 1 disables rounding.
	// Overrides are used as given.
	Multiple int
	// Overrides sets the rank of layers by exact name.
	Overrides map[string]int
	// Exclude keeps the layers whose name matches any of these patterns.
	Exclude []*regexp.Regexp
	// Force replaces a layer even when the factorization does not shrink it.
	Force bool
}

// Decision tells whether a layer is replaced and, if not, why.
type Decision struct {
	// Replace is true when the layer should be factorized at the chosen rank.
	Replace bool
	// Excluded is true when an Exclude pattern matched the layer name.
	Excluded bool
	// Reason explains the decision in words.
	Reason string
	// Params is the parameter count of the LPR module: r·(in+out) plus the
	// residual's parameters.
	Params int
	// DenseParams is the parameter count of the original weight, out·in.
	DenseParams int
}

// ParseExclude compiles name patterns for Policy.Exclude.
func ParseExclude(patterns []string) ([]*regexp.Regexp, error) {
	res := make([]*regexp.Regexp, 0, len(patterns))
	for _, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("exclude pattern %q: %w", p, err)
		}
		res = append(res, re)
	}
	return res, nil
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
	if set == 0 && len(p.Overrides) == 0 {
		return errors.New("rank policy: set one of rank, ratio or energy")
	}
	if set > 1 {
		return errors.New("rank policy: rank, ratio and energy are exclusive; set only one")
	}
	if p.Multiple < 0 {
		return fmt.Errorf("rank policy: multiple %d must not be negative", p.Multiple)
	}
	for name, r := range p.Overrides {
		if r < 1 {
			return fmt.Errorf("rank policy: override for layer %q: rank %d must be >= 1", name, r)
		}
	}
	for i, re := range p.Exclude {
		if re == nil {
			return fmt.Errorf("rank policy: exclude pattern %d is nil", i)
		}
	}
	return nil
}

// NeedsSpectrum reports whether Choose needs singular values (energy policy).
func (p Policy) NeedsSpectrum() bool { return p.Energy != 0 }

// Choose picks the rank of the layer called name with an out x in weight.
// spectrum holds the singular values of the matrix to be factored in
// decreasing order (see Spectrum); it is needed only by the energy policy.
// residualParams is the residual's parameter count (ResidualKind.Params).
// A layer is replaced only while r·(in+out) + residualParams < out·in,
// unless Force is set.
func (p Policy) Choose(name string, out, in int, spectrum []float64, residualParams int) (int, Decision, error) {
	if err := p.Validate(); err != nil {
		return 0, Decision{}, err
	}
	if out < 1 || in < 1 {
		return 0, Decision{}, fmt.Errorf("layer %q: shape %dx%d must be positive", name, out, in)
	}
	if residualParams < 0 {
		return 0, Decision{}, fmt.Errorf("layer %q: residual parameter count %d is negative", name, residualParams)
	}
	dec := Decision{DenseParams: out * in}
	for _, re := range p.Exclude {
		if re.MatchString(name) {
			dec.Excluded = true
			dec.Reason = fmt.Sprintf("excluded by pattern %q", re.String())
			return 0, dec, nil
		}
	}
	c := min(out, in)
	var r int
	var how string
	if o, ok := p.Overrides[name]; ok {
		if o > c {
			return 0, Decision{}, fmt.Errorf("layer %q: override rank %d exceeds min(out, in) = %d", name, o, c)
		}
		r, how = o, "override"
	} else {
		switch {
		case p.Rank != 0:
			r, how = min(p.Rank, c), fmt.Sprintf("fixed rank %d", p.Rank)
		case p.Ratio != 0:
			r, how = int(math.Ceil(p.Ratio*float64(c)-1e-9)), fmt.Sprintf("ratio %g", p.Ratio)
		case p.Energy != 0:
			var err error
			if r, err = energyRank(spectrum, p.Energy); err != nil {
				return 0, Decision{}, fmt.Errorf("layer %q: %w", name, err)
			}
			how = fmt.Sprintf("energy %g", p.Energy)
		default:
			dec.Reason = "no override for this layer and no base rank policy"
			return 0, dec, nil
		}
		r = max(1, min(r, c))
		if p.Multiple > 1 {
			r = min(c, (r+p.Multiple-1)/p.Multiple*p.Multiple)
			how += fmt.Sprintf(", rounded up to a multiple of %d", p.Multiple)
		}
	}
	dec.Params = r*(in+out) + residualParams
	switch {
	case dec.Params < dec.DenseParams:
		dec.Replace = true
		dec.Reason = fmt.Sprintf("rank %d (%s): %d parameters instead of %d", r, how, dec.Params, dec.DenseParams)
	case p.Force:
		dec.Replace = true
		dec.Reason = fmt.Sprintf("rank %d (%s) forced although %d parameters >= %d", r, how, dec.Params, dec.DenseParams)
	default:
		dec.Reason = fmt.Sprintf("rank %d (%s) does not shrink the layer: %d·(%d+%d) + %d = %d parameters >= %d", r, how, r, in, out, residualParams, dec.Params, dec.DenseParams)
	}
	return r, dec, nil
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
