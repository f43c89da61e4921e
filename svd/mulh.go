package svd

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
)

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major float32
// matrices, where op(X) is X or Xᵀ, op(A) is m x k, op(B) is k x n, and lda,
// ldb, ldc are the row strides of A, B and C as stored. An Sgemm given in
// Options must be safe for concurrent use.
type Sgemm func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// GonumSgemm is the default Sgemm, gonum's pure-Go blas32.Gemm.
func GonumSgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := blas.NoTrans, blas.NoTrans
	ar, ac, br, bc := m, k, k, n
	if transA {
		ta, ar, ac = blas.Trans, k, m
	}
	if transB {
		tb, br, bc = blas.Trans, n, k
	}
	blas32.Gemm(ta, tb, alpha,
		blas32.General{Rows: ar, Cols: ac, Stride: lda, Data: a},
		blas32.General{Rows: br, Cols: bc, Stride: ldb, Data: b},
		beta, blas32.General{Rows: m, Cols: n, Stride: ldc, Data: c})
}

// mixed runs the matrix products that only steer the search of a subspace:
// in float32 with an Sgemm (gonum's by default; callers can plug in a faster
// kernel through Options.Sgemm), or in float64 with gonum in precise mode.
// Traces, Householder orthonormalization, Rayleigh–Ritz eigenproblems and
// every reported error stay in float64 in both modes: a float32-level
// perturbation of the search subspace changes the captured squared norm only
// to second order (about 1e-14 relative). See the package doc for the
// products that are float32 outside precise mode.
type mixed struct {
	precise bool
	sgemm   Sgemm
	a32     []float32
	b32     []float32
	c32     []float32
	// hSrc and h32 cache the float32 copy of the last symmetric matrix.
	hSrc   *float64
	h32    []float32
	hScale float64
}

func newMixed(precise bool, sgemm Sgemm) *mixed {
	if sgemm == nil {
		sgemm = GonumSgemm
	}
	return &mixed{precise: precise, sgemm: sgemm}
}

// gemm sets c = alpha·op(a)·op(b) for compact matrices.
func (m *mixed) gemm(ta, tb blas.Transpose, alpha float64, a, b, c blas64.General) {
	if m.precise {
		mul(ta, tb, alpha, a, b, 0, c)
		return
	}
	var sa, sb float64
	m.a32, sa = toF32Scaled(m.a32, a.Data)
	m.b32, sb = toF32Scaled(m.b32, b.Data)
	m.gemm32(ta, tb, alpha*sa*sb, m.a32, a, m.b32, b, c)
}

// mulH sets y = alpha·H·x for the symmetric n x n matrix h; its float32
// copy is cached while the same h is used.
func (m *mixed) mulH(alpha float64, h, x, y blas64.General) {
	if m.precise {
		mul(blas.NoTrans, blas.NoTrans, alpha, h, x, 0, y)
		return
	}
	if m.hSrc != &h.Data[0] || len(m.h32) != len(h.Data) {
		m.h32, m.hScale = toF32Scaled(m.h32, h.Data)
		m.hSrc = &h.Data[0]
	}
	var sx float64
	m.b32, sx = toF32Scaled(m.b32, x.Data)
	m.gemm32(blas.NoTrans, blas.NoTrans, alpha*m.hScale*sx, m.h32, h, m.b32, x, y)
}

// forget drops the cached float32 copy of h (call when h is modified in place).
func (m *mixed) forget() { m.hSrc = nil }

// toF32Scaled converts src/s to float32 and returns s: 1 when src fits
// float32 comfortably (one pass), otherwise its largest magnitude, so that
// any finite float64 data keeps float32's relative precision.
func toF32Scaled(dst []float32, src []float64) ([]float32, float64) {
	if cap(dst) < len(src) {
		dst = make([]float32, len(src))
	}
	dst = dst[:len(src)]
	lo, hi := 0.0, 0.0
	for i, v := range src {
		dst[i] = float32(v)
		if v > hi {
			hi = v
		} else if v < lo {
			lo = v
		}
	}
	big := max(hi, -lo)
	if big == 0 || (big < 1e30 && big > 1e-30) {
		return dst, 1
	}
	inv := 1 / big
	for i, v := range src {
		dst[i] = float32(v * inv)
	}
	return dst, big
}

// gemm32 sets c = alpha·op(a32)·op(b32), with the scale alpha applied in
// float64 (it may exceed float32's range).
func (m *mixed) gemm32(ta, tb blas.Transpose, alpha float64, a32 []float32, a blas64.General, b32 []float32, b, c blas64.General) {
	rows, inner := a.Rows, a.Cols
	if ta == blas.Trans {
		rows, inner = a.Cols, a.Rows
	}
	cols := b.Cols
	if tb == blas.Trans {
		cols = b.Rows
	}
	if cap(m.c32) < rows*cols {
		m.c32 = make([]float32, rows*cols)
	}
	m.c32 = m.c32[:rows*cols]
	m.sgemm(ta == blas.Trans, tb == blas.Trans, rows, cols, inner, 1, a32, a.Cols, b32, b.Cols, 0, m.c32, cols)
	for i, v := range m.c32 {
		c.Data[i] = alpha * float64(v)
	}
}

// gram returns w·wᵀ (full storage) with the off-diagonal entries from a
// float32 product and the diagonal (the squared row norms) in float64.
func (m *mixed) gram(w blas64.General) blas64.General {
	n, k := w.Rows, w.Cols
	h := newGeneral(n, n)
	// Scale w to unit magnitude so that its squares cannot overflow or
	// underflow float32.
	big := maxAbs(w)
	if big == 0 {
		return h
	}
	if cap(m.a32) < n*k {
		m.a32 = make([]float32, n*k)
	}
	m.a32 = m.a32[:n*k]
	inv := 1 / big
	for i := 0; i < n; i++ {
		for j, v := range w.Data[i*w.Stride : i*w.Stride+k] {
			m.a32[i*k+j] = float32(v * inv)
		}
	}
	m.gemm32(blas.NoTrans, blas.Trans, big*big, m.a32, w, m.a32, w, h)
	for i := 0; i < n; i++ {
		s := 0.0
		for _, v := range w.Data[i*w.Stride : i*w.Stride+k] {
			s += v * v
		}
		h.Data[i*n+i] = s
		for j := i + 1; j < n; j++ {
			v := 0.5 * (h.Data[i*n+j] + h.Data[j*n+i])
			h.Data[i*n+j], h.Data[j*n+i] = v, v
		}
	}
	return h
}
