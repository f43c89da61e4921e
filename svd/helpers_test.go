package svd

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/mat"
)

// randomOrtho returns an n x n random orthogonal matrix.
func randomOrtho(g *rand.Rand, n int) *mat.Dense {
	a := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			a.Set(i, j, g.NormFloat64())
		}
	}
	var qr mat.QR
	qr.Factorize(a)
	var q mat.Dense
	qr.QTo(&q)
	return &q
}

// withSpectrum returns U diag(s) Vᵀ (out x in) as float32 for random
// orthogonal U, V; s has min(out, in) entries.
func withSpectrum(g *rand.Rand, out, in int, s []float64) []float32 {
	u, v := randomOrtho(g, out), randomOrtho(g, in)
	k := len(s)
	us := mat.NewDense(out, k, nil)
	for i := 0; i < out; i++ {
		for j := 0; j < k; j++ {
			us.Set(i, j, u.At(i, j)*s[j])
		}
	}
	var w mat.Dense
	w.Mul(us, v.Slice(0, in, 0, k).T())
	return denseF32(&w)
}

func denseF32(m mat.Matrix) []float32 {
	r, c := m.Dims()
	w := make([]float32, r*c)
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			w[i*c+j] = float32(m.At(i, j))
		}
	}
	return w
}

func gaussian(g *rand.Rand, n int, scale float64) []float32 {
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(g.NormFloat64() * scale)
	}
	return w
}

// expSpectrum returns σ_i = exp(−i/(tau·n)) for i < n.
func expSpectrum(n int, tau float64) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = math.Exp(-float64(i) / (tau * float64(n)))
	}
	return s
}

// exactSV returns the singular values of the matrix (float64) by gonum's SVD.
func exactSV(t *testing.T, m *mat.Dense) []float64 {
	t.Helper()
	var s mat.SVD
	if !s.Factorize(m, mat.SVDNone) {
		t.Fatal("reference SVD failed")
	}
	return s.Values(nil)
}

func toDense(w []float32, out, in int) *mat.Dense {
	d := make([]float64, len(w))
	for i, v := range w {
		d[i] = float64(v)
	}
	return mat.NewDense(out, in, d)
}

// reconstruct returns B A + R from the float32 factors, in float64.
func reconstruct(t *testing.T, f *Factors) *mat.Dense {
	t.Helper()
	var ba mat.Dense
	ba.Mul(toDense(f.B, f.Out, f.Rank), toDense(f.A, f.Rank, f.In))
	d, err := residualDiag(f)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range d {
		ba.Set(i, i, ba.At(i, i)+v)
	}
	return &ba
}

// relDiff returns ‖a − b‖_F / ‖b‖_F.
func relDiff(a, b *mat.Dense) float64 {
	var d mat.Dense
	d.Sub(a, b)
	return mat.Norm(&d, 2) / mat.Norm(b, 2)
}

var _ = blas.NoTrans
