package svd

import (
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// eigenConfig controls the subspace eigensolver.
type eigenConfig struct {
	oversample int     // extra basis vectors beyond k; <= 0 selects a default
	tol        float64 // stop when the captured trace grows by less than tol·trace(H)
	maxRounds  int     // maximum number of filter rounds
	degree     int     // Chebyshev filter degree per round
	seed       uint64  // seed of the random start
	exact      bool    // use the dense eigensolver
}

// eigenResult is the k largest eigenpairs of a symmetric positive
// semidefinite matrix, plus the Ritz basis for warm starts.
type eigenResult struct {
	vals  []float64      // k values, decreasing
	vecs  blas64.General // n x k, orthonormal columns
	basis blas64.General // n x l orthonormal Ritz basis (l >= k), for warm starts
	// rounds is the number of filter rounds used (0 for the dense path).
	rounds int
}

// basisSize returns the subspace dimension used for k wanted eigenpairs of an
// n x n matrix.
func basisSize(n, k, oversample int) int {
	p := oversample
	if p <= 0 {
		p = max(16, k/8)
	}
	return min(n, k+p)
}

// topEigen returns the k largest eigenpairs of the symmetric positive
// semidefinite n x n matrix h (full storage, not modified). warm, when it is
// an n x l matrix with orthonormal columns of the right size, starts the
// iteration from that basis.
func topEigen(h blas64.General, k int, warm *blas64.General, cfg eigenConfig) (eigenResult, error) {
	n := h.Rows
	l := basisSize(n, k, cfg.oversample)
	if cfg.exact || n <= 64 || 2*l > n {
		return denseTopEigen(h, k)
	}
	var ws qrWork
	var q blas64.General
	cold := warm == nil || warm.Rows != n || warm.Cols != l
	if cold {
		q = randomOrthonormal(n, l, cfg.seed, &ws)
	} else {
		q = cloneGeneral(*warm)
	}
	degree := cfg.degree
	if degree <= 0 {
		degree = 4
	}
	maxRounds := cfg.maxRounds
	if maxRounds <= 0 {
		maxRounds = 12
	}
	tr := trace(h)
	hq := newGeneral(n, l)
	t := newGeneral(l, l)
	y0, y1, y2 := newGeneral(n, l), newGeneral(n, l), newGeneral(n, l)

	// rayleighRitz computes h·q into hq and the Ritz pairs of span(q).
	rayleighRitz := func() ([]float64, blas64.General, error) {
		mul(blas.NoTrans, blas.NoTrans, 1, h, q, 0, hq)
		mul(blas.Trans, blas.NoTrans, 1, q, hq, 0, t)
		for i := 0; i < l; i++ {
			for j := i + 1; j < l; j++ {
				v := 0.5 * (t.Data[i*l+j] + t.Data[j*l+i])
				t.Data[i*l+j], t.Data[j*l+i] = v, v
			}
		}
		return symEigen(t, true)
	}
	captured := func(theta []float64) float64 {
		s := 0.0
		for _, v := range theta[:k] {
			s += v
		}
		return s
	}

	// filter replaces q by an orthonormal basis of T_m(2h/b − I)·q, where hq
	// holds h·q on entry. The Chebyshev polynomial is bounded by 1 on the
	// damped interval [0, b] and grows fastest above it. A tiny b makes it a
	// plain power iteration.
	filter := func(b float64) {
		copy(y0.Data, q.Data)
		for i := range y1.Data {
			y1.Data[i] = 2/b*hq.Data[i] - q.Data[i]
		}
		for m := 2; m <= degree; m++ {
			mul(blas.NoTrans, blas.NoTrans, 4/b, h, y1, 0, y2)
			for i := range y2.Data {
				y2.Data[i] -= 2*y1.Data[i] + y0.Data[i]
			}
			y0, y1, y2 = y1, y2, y0
			if s := maxAbs(y1); s > 1e100 {
				inv := 1 / s
				for i := range y1.Data {
					y1.Data[i] *= inv
					y0.Data[i] *= inv
				}
			}
		}
		copy(q.Data, y1.Data)
		orthonormalize(q, &ws)
	}

	var theta []float64
	var z blas64.General
	var err error
	prev := 0.0 // captured trace before the last round
	rounds := 0
	if cold {
		// A random start carries no spectral information: begin with
		// power steps, q ← orth(h^m q).
		for m := 0; m < degree; m++ {
			mul(blas.NoTrans, blas.NoTrans, 1, h, q, 0, hq)
			copy(q.Data, hq.Data)
			if s := maxAbs(q); s > 0 {
				for i := range q.Data {
					q.Data[i] /= s
				}
			}
		}
		orthonormalize(q, &ws)
		rounds = 1
	}
	theta, z, err = rayleighRitz()
	if err != nil {
		return eigenResult{}, err
	}
	for {
		top, b := theta[0], theta[l-1]
		cur := captured(theta)
		if rounds > 0 {
			// Each round contracts the remaining gap by about
			// ρ = 1/T_m(2θ_k/θ_l − 1)² (taken as at least 0.01), so after
			// a gain δ the gap left is about δ·ρ/(1 − ρ). Stop once that is
			// below tol times the smaller of the captured and the left-over
			// trace. (The gain of a cold start's first round is measured
			// from zero.)
			delta := math.Max(cur-prev, 0)
			rho := 0.01
			if b > 0 && theta[k-1] > b {
				rho = math.Max(rho, 1/math.Pow(chebT(degree, 2*theta[k-1]/b-1), 2))
			}
			if rho < 1 && delta*rho/(1-rho) <= cfg.tol*math.Max(math.Min(tr-cur, cur), 1e-12*tr) {
				break
			}
		}
		if rounds >= maxRounds || top <= 0 {
			break // top <= 0: h is zero and any orthonormal basis is an eigenbasis
		}
		prev = cur
		if b < top*1e-12 {
			b = top * 1e-12
		}
		filter(b)
		rounds++
		theta, z, err = rayleighRitz()
		if err != nil {
			return eigenResult{}, err
		}
	}
	// Rotate the basis onto the Ritz vectors.
	basis := newGeneral(n, l)
	mul(blas.NoTrans, blas.NoTrans, 1, q, z, 0, basis)
	res := eigenResult{vals: make([]float64, k), vecs: newGeneral(n, k), basis: basis, rounds: rounds}
	for i := range res.vals {
		res.vals[i] = math.Max(theta[i], 0)
	}
	for i := 0; i < n; i++ {
		copy(res.vecs.Data[i*k:i*k+k], basis.Data[i*l:i*l+k])
	}
	return res, nil
}

// denseTopEigen computes the k largest eigenpairs with the dense solver.
func denseTopEigen(h blas64.General, k int) (eigenResult, error) {
	n := h.Rows
	a := cloneGeneral(h)
	vals, v, err := symEigen(a, true)
	if err != nil {
		return eigenResult{}, err
	}
	res := eigenResult{vals: make([]float64, k), vecs: newGeneral(n, k), basis: v}
	for i := range res.vals {
		res.vals[i] = math.Max(vals[i], 0)
	}
	for i := 0; i < n; i++ {
		copy(res.vecs.Data[i*k:i*k+k], v.Data[i*n:i*n+k])
	}
	return res, nil
}

// chebT evaluates the Chebyshev polynomial T_m at x >= 1.
func chebT(m int, x float64) float64 {
	return math.Cosh(float64(m) * math.Acosh(x))
}
