package svd

import (
	"errors"
	"math"
	"math/rand/v2"
	"sort"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// newGeneral returns a zeroed rows x cols row-major matrix.
func newGeneral(rows, cols int) blas64.General {
	return blas64.General{Rows: rows, Cols: cols, Stride: cols, Data: make([]float64, rows*cols)}
}

// cloneGeneral returns a compact copy of a.
func cloneGeneral(a blas64.General) blas64.General {
	c := newGeneral(a.Rows, a.Cols)
	for i := 0; i < a.Rows; i++ {
		copy(c.Data[i*c.Stride:i*c.Stride+a.Cols], a.Data[i*a.Stride:i*a.Stride+a.Cols])
	}
	return c
}

// mul computes c = alpha·op(a)·op(b) + beta·c.
func mul(ta, tb blas.Transpose, alpha float64, a, b blas64.General, beta float64, c blas64.General) {
	blas64.Gemm(ta, tb, alpha, a, b, beta, c)
}

// gram returns m·mᵀ (full storage, both triangles) for m of shape n x k.
func gram(m blas64.General) blas64.General {
	n := m.Rows
	h := newGeneral(n, n)
	blas64.Syrk(blas.NoTrans, 1, m, 0, blas64.Symmetric{N: n, Stride: n, Data: h.Data, Uplo: blas.Upper})
	symmetrizeFromUpper(h)
	return h
}

// symmetrizeFromUpper copies the upper triangle of the square h into its lower triangle.
func symmetrizeFromUpper(h blas64.General) {
	n := h.Rows
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			h.Data[j*h.Stride+i] = h.Data[i*h.Stride+j]
		}
	}
}

// transpose returns aᵀ as a compact matrix.
func transpose(a blas64.General) blas64.General {
	t := newGeneral(a.Cols, a.Rows)
	for i := 0; i < a.Rows; i++ {
		row := a.Data[i*a.Stride : i*a.Stride+a.Cols]
		for j, v := range row {
			t.Data[j*t.Stride+i] = v
		}
	}
	return t
}

// frob2 returns the squared Frobenius norm of a.
func frob2(a blas64.General) float64 {
	s := 0.0
	for i := 0; i < a.Rows; i++ {
		for _, v := range a.Data[i*a.Stride : i*a.Stride+a.Cols] {
			s += v * v
		}
	}
	return s
}

// trace returns the trace of the square matrix a.
func trace(a blas64.General) float64 {
	s := 0.0
	for i := 0; i < a.Rows; i++ {
		s += a.Data[i*a.Stride+i]
	}
	return s
}

// orthonormalize replaces the columns of y (n x l, l <= n) by an orthonormal
// basis of their span (Householder QR), using work as scratch.
func orthonormalize(y blas64.General, ws *qrWork) {
	l := y.Cols
	if cap(ws.tau) < l {
		ws.tau = make([]float64, l)
	}
	tau := ws.tau[:l]
	need := 0
	var q [1]float64
	lapack64.Geqrf(y, tau, q[:], -1)
	need = int(q[0])
	lapack64.Orgqr(y, tau, q[:], -1)
	if int(q[0]) > need {
		need = int(q[0])
	}
	if len(ws.work) < need {
		ws.work = make([]float64, need)
	}
	lapack64.Geqrf(y, tau, ws.work, len(ws.work))
	lapack64.Orgqr(y, tau, ws.work, len(ws.work))
}

// qrWork holds scratch space reused across orthonormalizations.
type qrWork struct {
	tau, work []float64
}

// randomGaussian returns an n x l matrix of standard normal entries drawn
// with the given seed.
func randomGaussian(n, l int, seed uint64) blas64.General {
	g := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15^uint64(n)<<20^uint64(l)))
	y := newGeneral(n, l)
	for i := range y.Data {
		y.Data[i] = g.NormFloat64()
	}
	return y
}

// errEigen reports a failed dense symmetric eigendecomposition.
var errEigen = errors.New("symmetric eigendecomposition did not converge")

// symEigen computes all eigenpairs of the symmetric n x n matrix a (full
// storage; a is overwritten). Eigenvalues are returned in decreasing order
// with the matching eigenvectors as the columns of the returned matrix.
func symEigen(a blas64.General, vectors bool) ([]float64, blas64.General, error) {
	n := a.Rows
	s := blas64.Symmetric{N: n, Stride: a.Stride, Data: a.Data, Uplo: blas.Upper}
	w := make([]float64, n)
	job := lapack.EVNone
	if vectors {
		job = lapack.EVCompute
	}
	var q [1]float64
	lapack64.Syev(job, s, w, q[:], -1)
	work := make([]float64, int(q[0]))
	if !lapack64.Syev(job, s, w, work, len(work)) {
		return nil, blas64.General{}, errEigen
	}
	// Syev returns ascending eigenvalues; reverse to decreasing order.
	idx := make([]int, n)
	for i := range idx {
		idx[i] = n - 1 - i
	}
	sort.SliceStable(idx, func(x, y int) bool { return w[idx[x]] > w[idx[y]] })
	vals := make([]float64, n)
	for i, k := range idx {
		vals[i] = w[k]
	}
	if !vectors {
		return vals, blas64.General{}, nil
	}
	v := newGeneral(n, n)
	for i := 0; i < n; i++ {
		src := a.Data[i*a.Stride : i*a.Stride+n]
		dst := v.Data[i*n : i*n+n]
		for j, k := range idx {
			dst[j] = src[k]
		}
	}
	return vals, v, nil
}

// maxAbs returns the largest absolute entry of a.
func maxAbs(a blas64.General) float64 {
	m := 0.0
	for i := 0; i < a.Rows; i++ {
		for _, v := range a.Data[i*a.Stride : i*a.Stride+a.Cols] {
			if v := math.Abs(v); v > m {
				m = v
			}
		}
	}
	return m
}
