package svd

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// correlatedCov returns X Xᵀ for n channels and samples activations drawn
// as X = Mix·Z with a random mixing matrix with a decaying spectrum, so
// channels are strongly correlated. samples < n gives a rank-deficient cov.
func correlatedCov(g *rand.Rand, n, samples int) []float64 {
	mix := withSpectrum(g, n, n, expSpectrum(n, 0.15))
	x := mat.NewDense(n, samples, nil)
	z := mat.NewDense(n, samples, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < samples; j++ {
			z.Set(i, j, g.NormFloat64())
		}
	}
	x.Mul(toDense(mix, n, n), z)
	var c mat.Dense
	c.Mul(x, x.T())
	return c.RawMatrix().Data
}

// weightedOptimum returns the optimum of min ‖(M − B A) L‖ / ‖W L‖ over rank
// r, with Σ = L Lᵀ (Cholesky) and gonum's exact SVD of M L.
func weightedOptimum(t *testing.T, w, m *mat.Dense, cov []float64, r int) float64 {
	t.Helper()
	n := m.RawMatrix().Cols
	var ch mat.Cholesky
	if !ch.Factorize(mat.NewSymDense(n, cov)) {
		t.Fatal("reference Cholesky failed")
	}
	var l mat.TriDense
	ch.LTo(&l)
	var ml, wl mat.Dense
	ml.Mul(m, &l)
	wl.Mul(w, &l)
	return OptimalRelErr(exactSV(t, &ml), r) * mat.Norm(&ml, 2) / mat.Norm(&wl, 2)
}

func TestFactorizeData(t *testing.T) {
	g := rand.New(rand.NewPCG(21, 1))
	n, r := 96, 24
	for _, c := range []struct {
		name    string
		w       []float32
		samples int
		kind    ResidualKind
	}{
		{"none gaussian", gaussian(g, n*n, 0.1), 2000, KindNone},
		{"none exp spectrum", withSpectrum(g, n, n, expSpectrum(n, 0.46)), 2000, KindNone},
		{"identity", gaussian(g, n*n, 0.1), 2000, KindIdentity},
		{"diag", gaussian(g, n*n, 0.1), 2000, KindDiag},
		{"dw3", gaussian(g, n*n, 0.1), 2000, KindDepthwise(3)},
		{"rank-deficient cov none", gaussian(g, n*n, 0.1), 40, KindNone},
		{"rank-deficient cov diag", gaussian(g, n*n, 0.1), 40, KindDiag},
	} {
		t.Run(c.name, func(t *testing.T) {
			cov := correlatedCov(g, n, c.samples)
			fd, err := FactorizeData(c.w, n, n, r, c.kind, cov, Options{Lambda: 1e-10})
			if err != nil {
				t.Fatal(err)
			}
			ff, err := Factorize(c.w, n, n, r, c.kind, Options{})
			if err != nil {
				t.Fatal(err)
			}
			free, err := OutputError(c.w, ff, cov)
			if err != nil {
				t.Fatal(err)
			}
			aware, err := OutputError(c.w, fd, cov)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(aware-fd.OutErr) > 1e-6 {
				t.Errorf("OutErr %g but OutputError %g", fd.OutErr, aware)
			}
			if aware > free+1e-9 {
				t.Errorf("data-aware output error %.6f worse than data-free %.6f", aware, free)
			}
			if ff.OutErr != 0 {
				t.Errorf("data-free factors report OutErr %g", ff.OutErr)
			}
			// Weight error reported for data-aware factors is the real one.
			if d := relDiff(reconstruct(t, fd), toDense(c.w, n, n)); math.Abs(d-fd.RelErr) > 1e-5 {
				t.Errorf("RelErr %g, measured %g", fd.RelErr, d)
			}
			if c.kind.Type == None || c.kind.Type == Identity {
				m := toDense(c.w, n, n)
				if c.kind.Type == Identity {
					for i := 0; i < n; i++ {
						m.Set(i, i, m.At(i, i)-1)
					}
				}
				regCov := append([]float64(nil), cov...)
				mean := 0.0
				for i := 0; i < n; i++ {
					mean += cov[i*n+i] / float64(n)
				}
				for i := 0; i < n; i++ {
					regCov[i*n+i] += 1e-10 * mean
				}
				opt := weightedOptimum(t, toDense(c.w, n, n), m, regCov, r)
				if math.Abs(aware-opt) > 1e-4 {
					t.Errorf("output error %.7f, weighted optimum %.7f", aware, opt)
				}
			}
			t.Logf("output error: data-free %.5f data-aware %.5f (weight error %.5f vs %.5f)", free, aware, ff.RelErr, fd.RelErr)
		})
	}
}

// TestFactorizeDataIdentityCov checks that Σ = I reproduces the data-free
// factorization.
func TestFactorizeDataIdentityCov(t *testing.T) {
	g := rand.New(rand.NewPCG(22, 1))
	n, r := 64, 16
	w := gaussian(g, n*n, 0.1)
	cov := make([]float64, n*n)
	for i := 0; i < n; i++ {
		cov[i*n+i] = 1
	}
	for _, k := range []ResidualKind{KindNone, KindIdentity, KindDiag} {
		fd, err := FactorizeData(w, n, n, r, k, cov, Options{Lambda: 1e-12})
		if err != nil {
			t.Fatal(err)
		}
		ff, err := Factorize(w, n, n, r, k, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(fd.RelErr-ff.RelErr) > 1e-4 || math.Abs(fd.OutErr-fd.RelErr) > 1e-6 {
			t.Errorf("%v: identity covariance gives weight error %g / output error %g, data-free %g", k, fd.RelErr, fd.OutErr, ff.RelErr)
		}
	}
}

// TestFactorizeDataRectangular checks non-square weights against the
// weighted optimum.
func TestFactorizeDataRectangular(t *testing.T) {
	g := rand.New(rand.NewPCG(23, 1))
	for _, c := range []struct{ out, in, r int }{{48, 96, 12}, {96, 48, 12}} {
		w := gaussian(g, c.out*c.in, 0.1)
		cov := correlatedCov(g, c.in, 500)
		f, err := FactorizeData(w, c.out, c.in, c.r, KindNone, cov, Options{Lambda: 1e-12})
		if err != nil {
			t.Fatal(err)
		}
		opt := weightedOptimum(t, toDense(w, c.out, c.in), toDense(w, c.out, c.in), cov, c.r)
		if math.Abs(f.OutErr-opt) > 1e-4 {
			t.Errorf("%dx%d: output error %.7f, weighted optimum %.7f", c.out, c.in, f.OutErr, opt)
		}
		if len(f.A) != c.r*c.in || len(f.B) != c.out*c.r {
			t.Errorf("%dx%d: factor sizes %d %d", c.out, c.in, len(f.A), len(f.B))
		}
	}
}
