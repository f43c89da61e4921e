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

// BenchmarkMobileNetSet factors the 8 pointwise weights of MobileNetV1-1.0
// (C = 128, 256, 512 x5, 1024) at rank C/4 with the none residual.
func BenchmarkMobileNetSet(b *testing.B) {
	sizes := []int{128, 256, 512, 512, 512, 512, 512, 1024}
	var ws [][]float32
	for i, n := range sizes {
		ws = append(ws, withSpectrum(newRand(uint64(60+i)), n, n, expSpectrum(n, 0.46)))
	}
	b.ResetTimer()
	for b.Loop() {
		for i, n := range sizes {
			if _, err := Factorize(ws[i], n, n, n/4, KindNone, Options{}); err != nil {
				b.Fatal(err)
			}
		}
	}
}
