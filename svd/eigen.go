package svd

import (
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// eigenConfig controls the subspace eigensolver.
type eigenConfig struct {
	oversample int     // extra basis vectors beyond k; <= 0 selects a default
	tol        float64 // stop when the captured trace grows by less than tol·trace(H)
	maxRounds  int     // maximum number of filter rounds
	degree     int     // Chebyshev filter degree per round
	seed       uint64  // seed of the random start
	exact      bool    // use the dense eigensolver
	// rough rotates the final basis with a float32 product (its columns
	// are then orthonormal to about float32 precision only; for cheap
	// intermediate solves whose basis is re-orthonormalized later).
	rough bool
}

// eigenResult is the k largest eigenpairs of a symmetric positive
// semidefinite matrix, plus the Ritz basis for warm starts.
type eigenResult struct {
	vals  []float64      // k values, decreasing
	vecs  blas64.General // n x k, orthonormal columns
	basis blas64.General // n x l orthonormal Ritz basis (l >= k), for warm starts
	ritz  []float64      // the l Ritz values of basis, decreasing
	// rounds is the number of filter rounds used (0 for the dense path).
	rounds int
	// rough is true when vecs and basis are orthonormal only to about
	// float32 precision (eigenConfig.rough).
	rough bool
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
// the result of an earlier call for a nearby matrix, starts the iteration
// from its basis.
func topEigen(h blas64.General, k int, warm *eigenResult, cfg eigenConfig, mx *mixed) (eigenResult, error) {
	n := h.Rows
	l := basisSize(n, k, cfg.oversample)
	// The dense solver costs about 9n³ slow rotation flops with vectors;
	// the subspace iteration wins until the basis nearly fills the space.
	if cfg.exact || n <= 64 || 10*l > 9*n {
		return denseTopEigen(h, k)
	}
	var ws qrWork
	var q blas64.General
	cold := warm == nil || warm.basis.Rows != n || warm.basis.Cols != l
	if cold {
		// The power steps below orthonormalize once at their end; the span
		// of h^m G is that of h^m Q for G = Q R, so the Gaussian block
		// needs no QR of its own.
		q = randomGaussian(n, l, cfg.seed)
	} else {
		q = cloneGeneral(warm.basis)
	}
	degree := cfg.degree
	if degree <= 0 {
		degree = 5
	}
	maxRounds := cfg.maxRounds
	if maxRounds <= 0 {
		maxRounds = 12
	}
	tr := trace(h)
	mx.forget()
	hq := newGeneral(n, l)
	t := newGeneral(l, l)
	y0, y1, y2 := newGeneral(n, l), newGeneral(n, l), newGeneral(n, l)

	// rayleighRitz computes h·q into hq, the projected matrix t = qᵀ h q
	// and its eigenvalues (the Ritz values of span(q)); tcopy keeps t for
	// the final eigenvectors.
	tcopy := newGeneral(l, l)
	// With vectors set it also returns the eigenvectors z of t (the last
	// round's Ritz problem then needs no second decomposition).
	rayleighRitz := func(vectors bool) ([]float64, blas64.General, error) {
		mx.mulH(1, h, q, hq)
		mx.gemm(blas.Trans, blas.NoTrans, 1, q, hq, t)
		for i := 0; i < l; i++ {
			for j := i + 1; j < l; j++ {
				v := 0.5 * (t.Data[i*l+j] + t.Data[j*l+i])
				t.Data[i*l+j], t.Data[j*l+i] = v, v
			}
		}
		copy(tcopy.Data, t.Data)
		return symEigen(t, vectors)
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
			mx.mulH(4/b, h, y1, y2)
			for i := range y2.Data {
				y2.Data[i] -= 2*y1.Data[i] + y0.Data[i]
			}
			y0, y1, y2 = y1, y2, y0
			if s := maxAbs(y1); s > 1e30 {
				inv := 1 / s
				for i := range y1.Data {
					y1.Data[i] *= inv
					y0.Data[i] *= inv
				}
			}
		}
		copy(q.Data, y1.Data)
		if cfg.rough {
			roughOrthonormalize(q, mx, &ws)
		} else {
			orthonormalize(q, &ws)
		}
	}

	var theta []float64
	var z blas64.General // eigenvectors of tcopy, once computed
	var err error
	prev := 0.0 // captured trace before the last round
	rounds := 0
	if cold {
		// A random start carries no spectral information: begin with
		// power steps, q ← orth(h^m q).
		for m := 0; m < degree; m++ {
			mx.mulH(1, h, q, hq)
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
	if !cold && maxRounds == 1 && len(warm.ritz) == l {
		// One cheap round from a warm start: take the damping bound from
		// the previous Ritz values instead of a new Rayleigh–Ritz step.
		mx.mulH(1, h, q, hq)
		theta = warm.ritz
	} else if theta, z, err = rayleighRitz(rounds >= maxRounds); err != nil {
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
		theta, z, err = rayleighRitz(rounds >= maxRounds)
		if err != nil {
			return eigenResult{}, err
		}
	}
	// Ritz vectors: rotate the basis onto the eigenvectors of qᵀ h q.
	if z.Rows == 0 {
		if theta, z, err = symEigen(tcopy, true); err != nil {
			return eigenResult{}, err
		}
	}
	basis := newGeneral(n, l)
	if cfg.rough {
		mx.gemm(blas.NoTrans, blas.NoTrans, 1, q, z, basis)
	} else {
		mul(blas.NoTrans, blas.NoTrans, 1, q, z, 0, basis)
	}
	res := eigenResult{vals: make([]float64, k), vecs: newGeneral(n, k), basis: basis, ritz: theta, rounds: rounds, rough: cfg.rough}
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
	res := eigenResult{vals: make([]float64, k), vecs: newGeneral(n, k), basis: v, ritz: vals}
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

// roughOrthonormalize orthonormalizes the columns of y to about float32
// precision by Cholesky QR on the column-normalized block, with the Gram
// matrix and the triangular solve done as float32 products; it falls back to
// Householder QR when the Gram matrix is not numerically positive definite.
func roughOrthonormalize(y blas64.General, mx *mixed, ws *qrWork) {
	n, l := y.Rows, y.Cols
	norms := make([]float64, l)
	for i := 0; i < n; i++ {
		for j, v := range y.Data[i*l : i*l+l] {
			norms[j] += v * v
		}
	}
	for j := range norms {
		if norms[j] == 0 {
			orthonormalize(y, ws)
			return
		}
		norms[j] = 1 / math.Sqrt(norms[j])
	}
	for i := 0; i < n; i++ {
		row := y.Data[i*l : i*l+l]
		for j := range row {
			row[j] *= norms[j]
		}
	}
	s := newGeneral(l, l)
	mx.gemm(blas.Trans, blas.NoTrans, 1, y, y, s)
	u, ok := lapack64.Potrf(blas64.Symmetric{N: l, Stride: l, Data: s.Data, Uplo: blas.Upper})
	if !ok || !lapack64.Trtri(u) {
		orthonormalize(y, ws)
		return
	}
	for i := 1; i < l; i++ {
		for j := 0; j < i; j++ {
			s.Data[i*l+j] = 0
		}
	}
	q := newGeneral(n, l)
	mx.gemm(blas.NoTrans, blas.NoTrans, 1, y, s, q)
	copy(y.Data, q.Data)
}
