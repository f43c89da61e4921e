package svd

import "testing"

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
