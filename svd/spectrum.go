package svd

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas/blas64"
)

// Spectrum returns the singular values, in decreasing order, of the matrix
// that a factorization with the given residual approximates: W for none,
// W − I for identity, and W − diag(d) at the diag fixed point (found at rank
// opts.SpectrumRank, default ceil(C/4)) for diag and depthwise residuals.
// The values come from the eigenvalues of the smaller Gram matrix in float64,
// which resolves singular values down to about 1e-8 of the largest.
func Spectrum(w []float32, out, in int, kind ResidualKind, opts Options) ([]float64, error) {
	if err := checkWeight(w, out, in); err != nil {
		return nil, fmt.Errorf("spectrum: %w", err)
	}
	if err := kind.Validate(); err != nil {
		return nil, fmt.Errorf("spectrum: %w", err)
	}
	if kind.NeedsSquare() && out != in {
		return nil, fmt.Errorf("spectrum: residual %v needs a square weight, got %dx%d", kind, out, in)
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("spectrum: %w", err)
	}
	m := toGeneral(w, out, in)
	switch kind.Type {
	case Identity:
		for i := 0; i < out; i++ {
			m.Data[i*in+i]--
		}
	case Diag, Depthwise:
		r := o.SpectrumRank
		if r == 0 {
			r = (out + 3) / 4
		}
		if r > out {
			return nil, fmt.Errorf("spectrum: SpectrumRank %d exceeds %d channels", r, out)
		}
		pb := newProblem(cloneGeneral(m), blas64.General{}, r, o)
		s, _, err := pb.diag()
		if err != nil {
			return nil, fmt.Errorf("spectrum: %w", err)
		}
		for i := 0; i < out; i++ {
			m.Data[i*in+i] -= s.d[i]
		}
	}
	if out > in {
		m = transpose(m)
	}
	vals, _, err := symEigen(gram(m), false)
	if err != nil {
		return nil, fmt.Errorf("spectrum: %w", err)
	}
	for i, v := range vals {
		vals[i] = math.Sqrt(math.Max(v, 0))
	}
	return vals, nil
}

// OptimalRelErr returns sqrt(Σ_{i>=r} σ_i²) / sqrt(Σ_i σ_i²) for the
// singular values s: by the Eckart–Young theorem, the smallest relative
// Frobenius error ‖M − M_r‖_F / ‖M‖_F of any rank-r approximation M_r of a
// matrix M with those singular values (NaN when they are all zero).
func OptimalRelErr(s []float64, r int) float64 {
	tot, tail := 0.0, 0.0
	for i, v := range s {
		tot += v * v
		if i >= r {
			tail += v * v
		}
	}
	return math.Sqrt(tail / tot)
}
