package svd

import (
	"testing"
	"time"
)

func TestScratchDiag(t *testing.T) {
	for _, n := range []int{512} {
		s := expSpectrum(n, 0.46)
		w := withSpectrum(newRand(5), n, n, s)
		g := newRand(6)
		w2 := append([]float32(nil), w...)
		for i := 0; i < n; i++ {
			w2[i*n+i] += float32(0.05 * g.NormFloat64())
		}
		for _, ww := range [][]float32{w, w2} {
			for _, tol := range []float64{1e-6, 1e-4} {
				st := time.Now()
				f, err := Factorize(ww, n, n, n/4, KindDiag, Options{Tol: tol})
				if err != nil {
					t.Fatal(err)
				}
				fn, _ := Factorize(ww, n, n, n/4, KindNone, Options{})
				t.Logf("n=%d tol %g: diag %.6f none %.6f iters %d %.2fs", n, tol, f.RelErr, fn.RelErr, f.Iterations, time.Since(st).Seconds())
			}
		}
	}
}
