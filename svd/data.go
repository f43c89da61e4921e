package svd

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// checkCov validates an n x n second-moment matrix.
func checkCov(cov []float64, n int) error {
	if len(cov) != n*n {
		return fmt.Errorf("covariance has %d values, want %d for %d input channels", len(cov), n*n, n)
	}
	scale := 0.0
	for i := 0; i < n; i++ {
		v := cov[i*n+i]
		if v < 0 {
			return fmt.Errorf("covariance diagonal entry %d is negative (%g): not a second-moment matrix X Xᵀ", i, v)
		}
		scale = math.Max(scale, v)
	}
	for i, v := range cov {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("covariance entry (%d, %d) is %v", i/n, i%n, v)
		}
	}
	if scale == 0 {
		return errors.New("covariance is zero: the calibration activations carry no signal")
	}
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			if math.Abs(cov[i*n+j]-cov[j*n+i]) > 1e-6*scale {
				return fmt.Errorf("covariance is not symmetric at (%d, %d): %g vs %g", i, j, cov[i*n+j], cov[j*n+i])
			}
		}
	}
	return nil
}

// regularizedCov returns (Σ + Σᵀ)/2 + λ·mean(diag Σ)·I.
func regularizedCov(cov []float64, n int, lambda float64) (blas64.General, error) {
	if err := checkCov(cov, n); err != nil {
		return blas64.General{}, err
	}
	s := newGeneral(n, n)
	mean := 0.0
	for i := 0; i < n; i++ {
		mean += cov[i*n+i]
	}
	mean /= float64(n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			s.Data[i*n+j] = 0.5 * (cov[i*n+j] + cov[j*n+i])
		}
		s.Data[i*n+i] += lambda * mean
	}
	return s, nil
}

// OutputError returns the relative output error ‖(W − R − B A) X‖_F / ‖W X‖_F
// of factors f for the activations X whose second-moment matrix is cov = X Xᵀ
// (in x in, row-major, used as given, without regularization). It works for
// data-free and data-aware factors alike. Depthwise residuals count through
// their centre taps; their other taps must be zero (as Factorize leaves them),
// since a per-pixel covariance cannot describe a spatial kernel.
func OutputError(w []float32, f *Factors, cov []float64) (float64, error) {
	if f == nil {
		return 0, errors.New("output error: factors are nil")
	}
	out, in, r := f.Out, f.In, f.Rank
	if err := checkWeight(w, out, in); err != nil {
		return 0, fmt.Errorf("output error: %w", err)
	}
	if len(f.A) != r*in || len(f.B) != out*r || r < 1 {
		return 0, fmt.Errorf("output error: factors of rank %d have %d and %d values, want A %d and B %d", r, len(f.A), len(f.B), r*in, out*r)
	}
	if err := checkCov(cov, in); err != nil {
		return 0, fmt.Errorf("output error: %w", err)
	}
	d, err := residualDiag(f)
	if err != nil {
		return 0, fmt.Errorf("output error: %w", err)
	}
	a, b := toGeneral(f.A, r, in), toGeneral(f.B, out, r)
	wm := toGeneral(w, out, in)
	e := cloneGeneral(wm)
	mul(blas.NoTrans, blas.NoTrans, -1, b, a, 1, e)
	for i, v := range d {
		e.Data[i*in+i] -= v
	}
	sig := blas64.General{Rows: in, Cols: in, Stride: in, Data: cov}
	num := weightedNorm2(e, sig)
	den := weightedNorm2(wm, sig)
	if den <= 0 {
		return 0, errors.New("output error: ‖W X‖ is zero")
	}
	return math.Sqrt(math.Max(num, 0) / den), nil
}

// weightedNorm2 returns tr(E Σ Eᵀ).
func weightedNorm2(e, sig blas64.General) float64 {
	es := newGeneral(e.Rows, e.Cols)
	mul(blas.NoTrans, blas.NoTrans, 1, e, sig, 0, es)
	s := 0.0
	for i, v := range es.Data {
		s += v * e.Data[i]
	}
	return s
}

// residualDiag returns the per-channel residual of f (nil for none).
func residualDiag(f *Factors) ([]float64, error) {
	switch f.Residual.Type {
	case None:
		return nil, nil
	case Identity:
		if f.In != f.Out {
			return nil, fmt.Errorf("identity residual on a %dx%d weight", f.Out, f.In)
		}
		return constant(f.Out, 1), nil
	case Diag, Depthwise:
		if f.In != f.Out || len(f.Diag) != f.Out {
			return nil, fmt.Errorf("residual %v: Diag has %d values, want %d", f.Residual, len(f.Diag), f.Out)
		}
		if f.Residual.Type == Depthwise {
			k := f.Residual.K
			if len(f.Taps) != f.Out*k*k {
				return nil, fmt.Errorf("residual %v: Taps has %d values, want %d", f.Residual, len(f.Taps), f.Out*k*k)
			}
			c := k / 2
			for i := 0; i < f.Out; i++ {
				for t := 0; t < k*k; t++ {
					if t != c*k+c && f.Taps[i*k*k+t] != 0 {
						return nil, fmt.Errorf("residual %v: channel %d has a non-zero off-centre tap; the output error needs spatial activations", f.Residual, i)
					}
				}
				if f.Taps[i*k*k+c*k+c] != f.Diag[i] {
					return nil, fmt.Errorf("residual %v: channel %d centre tap differs from Diag", f.Residual, i)
				}
			}
		}
		d := make([]float64, f.Out)
		for i, v := range f.Diag {
			d[i] = float64(v)
		}
		return d, nil
	}
	return nil, fmt.Errorf("unknown residual %v", f.Residual)
}
