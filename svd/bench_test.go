package svd

import "testing"

// BenchmarkFactorize1024 factors a 1024x1024 weight with a MobileNet-like
// spectrum at rank 256.
func BenchmarkFactorize1024(b *testing.B) {
	n := 1024
	w := withSpectrum(newRand(51), n, n, expSpectrum(n, 0.46))
	for _, k := range []ResidualKind{KindNone, KindDiag} {
		b.Run(k.String(), func(b *testing.B) {
			for b.Loop() {
				if _, err := Factorize(w, n, n, n/4, k, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
