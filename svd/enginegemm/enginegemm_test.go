package enginegemm

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/lprconv/lprconv/svd"
)

// TestMatchesGonum compares the engine GEMM with gonum's on every
// transpose combination, concurrently.
func TestMatchesGonum(t *testing.T) {
	g := rand.New(rand.NewPCG(1, 2))
	gemm := New(2)
	var wg sync.WaitGroup
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			m, n, k := 37, 53, 71
			a := make([]float32, m*k)
			b := make([]float32, k*n)
			for i := range a {
				a[i] = float32(g.NormFloat64())
			}
			for i := range b {
				b[i] = float32(g.NormFloat64())
			}
			lda, ldb := k, n
			if ta {
				lda = m
			}
			if tb {
				ldb = k
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				want := make([]float32, m*n)
				got := make([]float32, m*n)
				svd.GonumSgemm(ta, tb, m, n, k, 0.5, a, lda, b, ldb, 0, want, n)
				gemm(ta, tb, m, n, k, 0.5, a, lda, b, ldb, 0, got, n)
				for i := range want {
					if math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
						t.Errorf("transA %v transB %v: element %d = %g, gonum %g", ta, tb, i, got[i], want[i])
						return
					}
				}
			}()
		}
	}
	wg.Wait()
}

// TestFactorizeWithEngine checks that svd reaches the Eckart–Young optimum
// with the engine GEMM.
func TestFactorizeWithEngine(t *testing.T) {
	g := rand.New(rand.NewPCG(3, 4))
	n, r := 256, 64
	w := make([]float32, n*n)
	for i := range w {
		w[i] = float32(g.NormFloat64())
	}
	ref, err := svd.Factorize(w, n, n, r, svd.KindNone, svd.Options{Precise: true})
	if err != nil {
		t.Fatal(err)
	}
	f, err := svd.Factorize(w, n, n, r, svd.KindNone, svd.Options{Sgemm: New(0)})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(f.RelErr-ref.RelErr) > 1e-4 {
		t.Errorf("RelErr %.7f with the engine GEMM, %.7f with float64 products", f.RelErr, ref.RelErr)
	}
}
