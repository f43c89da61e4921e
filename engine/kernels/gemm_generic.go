package kernels

// genericKernel is the portable micro-kernel used by the purego build, on
// other architectures and on CPUs without AVX2/FMA.
var genericKernel = kernelSpec{
	name: "go4x16",
	mr:   4, nr: 16,
	kc: 256, mc: 128, nc: 2048,
	packed: microGeneric4x16,
}

func microGeneric4x16(kc int, a []float32, _ int, b, c []float32, ldc int, alpha, beta float32) {
	var t [4][16]float32
	a = a[:kc*4]
	b = b[:kc*16]
	for p := 0; p < kc; p++ {
		bp := (*[16]float32)(b[p*16:])
		ap := (*[4]float32)(a[p*4:])
		for i := 0; i < 4; i++ {
			ai := ap[i]
			row := &t[i]
			for j := 0; j < 16; j++ {
				row[j] += ai * bp[j]
			}
		}
	}
	for i := 0; i < 4; i++ {
		dst := (*[16]float32)(c[i*ldc:])
		if beta == 0 {
			for j := 0; j < 16; j++ {
				dst[j] = alpha * t[i][j]
			}
			continue
		}
		for j := 0; j < 16; j++ {
			dst[j] = alpha*t[i][j] + beta*dst[j]
		}
	}
}
