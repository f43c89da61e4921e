//go:build amd64 && !purego

package kernels

//go:generate go run -C asm . -out ../kernels_amd64.s -stubs ../kernels_amd64_stubs.go -pkg kernels

// cpuFeatures is what the CPU and the operating system support.
type cpuFeatures struct {
	avx2FMA bool // AVX, AVX2 and FMA with YMM state enabled
	avx512  bool // AVX-512 F, BW, DQ, VL (and BMI2) with ZMM state enabled
}

// detectCPU reads the CPU features with CPUID and XGETBV.
func detectCPU() cpuFeatures {
	var f cpuFeatures
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return f
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const fma, osxsave, avx = 1 << 12, 1 << 27, 1 << 28
	if ecx1&(fma|osxsave|avx) != fma|osxsave|avx {
		return f
	}
	xcr0, _ := xgetbv0()
	if xcr0&0x6 != 0x6 {
		return f
	}
	_, ebx7, _, _ := cpuid(7, 0)
	const bmi2 = 1 << 8
	const avx2, avx512f, avx512dq, avx512bw, avx512vl = 1 << 5, 1 << 16, 1 << 17, 1 << 30, 1 << 31
	f.avx2FMA = ebx7&avx2 != 0
	const avx512all = avx512f | avx512dq | avx512bw | avx512vl
	f.avx512 = f.avx2FMA && ebx7&avx512all == avx512all && ebx7&bmi2 != 0 && xcr0&0xe0 == 0xe0
	return f
}

// cpu holds the features of this machine; it is written once at start-up
// and only read afterwards.
var cpu = detectCPU()

// asmKernel is the signature of the generated micro-kernels.
type asmKernel func(kc int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32)

// asmKernelB is the signature of the generated micro-kernels that read B
// in place (row stride ldb).
type asmKernelB func(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)

// asmKernelEp and asmKernelBEp are asmKernel and asmKernelB with the fused
// epilogue (see epKernels).
type (
	asmKernelEp  func(kc int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32, bias *float32, lo, hi float32)
	asmKernelBEp func(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, bias *float32, lo, hi float32)
)

// asmEp wraps the fused-epilogue variants of an asmSpec family, checking
// the slice bounds as asmSpec does.
func asmEp(mr, nr int, packed, rows, cols asmKernelEp, bRows asmKernelBEp) *epKernels {
	return &epKernels{
		packed: func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32, bias []float32, lo, hi float32) {
			_, _, _, _ = a[mr*kc-1], b[nr*kc-1], c[(mr-1)*ldc+nr-1], bias[mr-1]
			packed(kc, &a[0], lda, &b[0], &c[0], ldc, alpha, beta, &bias[0], lo, hi)
		},
		rows: func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32, bias []float32, lo, hi float32) {
			_, _, _, _ = a[(mr-1)*lda+kc-1], b[nr*kc-1], c[(mr-1)*ldc+nr-1], bias[mr-1]
			rows(kc, &a[0], lda, &b[0], &c[0], ldc, alpha, beta, &bias[0], lo, hi)
		},
		cols: func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32, bias []float32, lo, hi float32) {
			_, _, _, _ = a[(kc-1)*lda+mr-1], b[nr*kc-1], c[(mr-1)*ldc+nr-1], bias[mr-1]
			cols(kc, &a[0], lda, &b[0], &c[0], ldc, alpha, beta, &bias[0], lo, hi)
		},
		bRows: func(kc int, a, b []float32, ldb int, c []float32, ldc int, alpha, beta float32, bias []float32, lo, hi float32) {
			_, _, _, _ = a[mr*kc-1], b[(kc-1)*ldb+nr-1], c[(mr-1)*ldc+nr-1], bias[mr-1]
			bRows(kc, &a[0], 0, &b[0], ldb, &c[0], ldc, alpha, beta, &bias[0], lo, hi)
		},
	}
}

// asmSpec wraps three generated micro-kernels (A packed, A rows, A columns)
// of one mr x nr tile into a kernelSpec, checking the slice bounds.
func asmSpec(name string, mr, nr, mc int, packed, rows, cols asmKernel, bRows asmKernelB) kernelSpec {
	return kernelSpec{
		bRows: func(kc int, a, b []float32, ldb int, c []float32, ldc int, alpha, beta float32) {
			_, _, _ = a[mr*kc-1], b[(kc-1)*ldb+nr-1], c[(mr-1)*ldc+nr-1]
			bRows(kc, &a[0], 0, &b[0], ldb, &c[0], ldc, alpha, beta)
		},
		name: name, mr: mr, nr: nr,
		// kc 512 rather than 256: depths of 257-512 (MobileNetV1's 512-channel
		// pointwise convolutions) take one pass over C instead of two; the
		// 1x1 convolutions of MobileNetV1 1.0 at batch 1 took 2-5% less
		// (sum of per-step thread CPU minima, one thread, AVX-512).
		kc: 512, mc: mc, nc: 4096,
		directMaxN: 256,
		packed: func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32) {
			_, _, _ = a[mr*kc-1], b[nr*kc-1], c[(mr-1)*ldc+nr-1]
			packed(kc, &a[0], lda, &b[0], &c[0], ldc, alpha, beta)
		},
		rows: func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32) {
			_, _, _ = a[(mr-1)*lda+kc-1], b[nr*kc-1], c[(mr-1)*ldc+nr-1]
			rows(kc, &a[0], lda, &b[0], &c[0], ldc, alpha, beta)
		},
		cols: func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32) {
			_, _, _ = a[(kc-1)*lda+mr-1], b[nr*kc-1], c[(mr-1)*ldc+nr-1]
			cols(kc, &a[0], lda, &b[0], &c[0], ldc, alpha, beta)
		},
	}
}

var (
	avx512Kernel = withEp(asmSpec("avx512-12x32", 12, 32, 144, gemmAVX512x12x32Packed, gemmAVX512x12x32Rows, gemmAVX512x12x32Cols, gemmAVX512x12x32BRows),
		asmEp(12, 32, gemmAVX512x12x32PackedEp, gemmAVX512x12x32RowsEp, gemmAVX512x12x32ColsEp, gemmAVX512x12x32BRowsEp),
		gemmAVX512x12x16PackedEdge, gemmAVX512x12x16RowsEdge, gemmAVX512x12x16ColsEdge)
	avx512Kernel8 = withEp(asmSpec("avx512-8x32", 8, 32, 128, gemmAVX512x8x32Packed, gemmAVX512x8x32Rows, gemmAVX512x8x32Cols, gemmAVX512x8x32BRows),
		asmEp(8, 32, gemmAVX512x8x32PackedEp, gemmAVX512x8x32RowsEp, gemmAVX512x8x32ColsEp, gemmAVX512x8x32BRowsEp),
		gemmAVX512x8x16PackedEdge, gemmAVX512x8x16RowsEdge, gemmAVX512x8x16ColsEdge)
	avx2Kernel = asmSpec("avx2-6x16", 6, 16, 144, gemmAVX2x6x16Packed, gemmAVX2x6x16Rows, gemmAVX2x6x16Cols, gemmAVX2x6x16BRows)
)

// withEp returns k with the fused-epilogue kernels ep, the 16-column
// kernels packed, rows and cols (see kernelSpec.edge) and the one-row
// kernel (kernelSpec.row1; the AVX-512 families have 32 columns).
func withEp(k kernelSpec, ep *epKernels, packed, rows, cols asmKernel) kernelSpec {
	k.ep = ep
	mr, nr := k.mr, k.nr
	k.row1 = func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32) {
		_, _, _ = a[(kc-1)*lda], b[nr*kc-1], c[nr-1]
		gemmAVX512x1x32Cols(kc, &a[0], lda, &b[0], &c[0], ldc, alpha, beta)
	}
	k.edge = &[3]microKernel{
		func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32) {
			_, _, _ = a[mr*kc-1], b[nr*kc-1], c[(mr-1)*ldc+15]
			packed(kc, &a[0], lda, &b[0], &c[0], ldc, alpha, beta)
		},
		func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32) {
			_, _, _ = a[(mr-1)*lda+kc-1], b[nr*kc-1], c[(mr-1)*ldc+15]
			rows(kc, &a[0], lda, &b[0], &c[0], ldc, alpha, beta)
		},
		func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32) {
			_, _, _ = a[(kc-1)*lda+mr-1], b[nr*kc-1], c[(mr-1)*ldc+15]
			cols(kc, &a[0], lda, &b[0], &c[0], ldc, alpha, beta)
		},
	}
	return k
}

// bestKernel is the fastest GEMM micro-kernel this CPU supports.
var bestKernel = func() *kernelSpec {
	switch {
	case cpu.avx512:
		return &avx512Kernel8
	case cpu.avx2FMA:
		return &avx2Kernel
	}
	return &genericKernel
}()

// kernelsAvailable lists every GEMM micro-kernel this CPU can run.
func kernelsAvailable() []*kernelSpec {
	ks := []*kernelSpec{&genericKernel}
	if cpu.avx2FMA {
		ks = append(ks, &avx2Kernel)
	}
	if cpu.avx512 {
		ks = append(ks, &avx512Kernel8, &avx512Kernel)
	}
	return ks
}

// vecDot returns sum x[i]*y[i] (len(y) >= len(x)).
func vecDot(x, y []float32) float32 {
	if len(x) == 0 {
		return 0
	}
	if !cpu.avx2FMA {
		return dotGeneric(x, y)
	}
	_ = y[len(x)-1]
	return dotAVX2(&x[0], &y[0], len(x))
}

// vecAxpy computes y += alpha*x (len(y) >= len(x)).
func vecAxpy(alpha float32, x, y []float32) {
	if len(x) == 0 {
		return
	}
	if !cpu.avx2FMA {
		axpyGeneric(alpha, x, y)
		return
	}
	_ = y[len(x)-1]
	axpyAVX2(alpha, &x[0], &y[0], len(x))
}

// packCopyFast packs kc rows of nr values of a row-major B (row stride
// ldb) into dst; it reports false when no vector packer fits.
func packCopyFast(dst, src []float32, ldb, kc, nr int) bool {
	if !cpu.avx2FMA || kc == 0 || (nr != 32 && nr != 16) {
		return false
	}
	_, _ = dst[kc*nr-1], src[(kc-1)*ldb+nr-1]
	if nr == 32 {
		packCopy32AVX(&dst[0], &src[0], ldb, kc)
	} else {
		packCopy16AVX(&dst[0], &src[0], ldb, kc)
	}
	return true
}

// packTransFast packs the first kc/8*8 rows of cols columns (a multiple of
// 8) of a panel with row stride nr from a transposed source (element
// (p, j) at src[j*ld+p]) into dst, and returns how many rows it packed.
func packTransFast(dst, src []float32, ld, kc, nr, cols int) int {
	blocks := kc / 8
	if !cpu.avx2FMA || blocks == 0 || cols == 0 || cols%8 != 0 {
		return 0
	}
	_, _ = dst[(blocks*8-1)*nr+cols-1], src[(cols-1)*ld+blocks*8-1]
	packTrans8AVX(&dst[0], &src[0], ld, nr, cols/8, blocks)
	return blocks * 8
}

// biasActTile applies a fused epilogue to a tile (see Epilogue).
func biasActTile(c []float32, ldc, rows, cols int, rowBias, colBias []float32, lo, hi float32) {
	if !cpu.avx512 || rows == 0 || cols == 0 {
		biasActTileGeneric(c, ldc, rows, cols, rowBias, colBias, lo, hi)
		return
	}
	_ = c[(rows-1)*ldc+cols-1]
	flags := 0
	var rb, cb *float32
	if rowBias != nil {
		_ = rowBias[rows-1]
		rb, flags = &rowBias[0], flags|1
	}
	if colBias != nil {
		_ = colBias[cols-1]
		cb, flags = &colBias[0], flags|2
	}
	biasActTileAVX512(&c[0], ldc, rows, cols, rb, cb, flags, lo, hi)
}

// packGatherFast packs kc rows of a 32-column panel whose columns are at
// offsets offs (at most maxOff) from src, rows ldb apart; it reports false
// when it cannot.
func packGatherFast(dst, src []float32, offs *[32]int32, maxOff, ldb, kc int) bool {
	if !cpu.avx512 || kc == 0 {
		return false
	}
	_, _ = dst[kc*32-1], src[(kc-1)*ldb+maxOff]
	packGather32AVX512(&dst[0], &src[0], &offs[0], ldb, kc)
	return true
}

// scatterTileFast stores rows x cols of a 32-column tile to c at column
// offsets offs (at most maxOff), rows ldc apart; it reports false when it
// cannot.
func scatterTileFast(c []float32, offs *[32]int32, maxOff int, tile []float32, ldc, rows, cols int) bool {
	if !cpu.avx512 || rows == 0 {
		return false
	}
	_, _ = c[(rows-1)*ldc+maxOff], tile[rows*32-1]
	scatterTile32AVX512(&c[0], &offs[0], &tile[0], ldc, rows, uint32(1<<cols-1))
	return true
}

// gatherStride2 copies src[2*i] into dst[i] for i < len(dst)
// (len(src) >= 2*len(dst)-1).
func gatherStride2(dst, src []float32) {
	n := len(dst)
	if n == 0 {
		return
	}
	_ = src[2*n-2]
	if !cpu.avx512 {
		for i := range dst {
			dst[i] = src[2*i]
		}
		return
	}
	// Full blocks read 32 values; stop them before the end of src.
	full := 0
	if len(src) >= 32 {
		full = min(n, (len(src)-32)/32*16+16) / 16 * 16
	}
	if full > 0 {
		gatherStride2AVX512(&dst[0], &src[0], full)
	}
	if full < n {
		gatherStride2AVX512(&dst[full], &src[2*full], n-full)
	}
}

// zeroRow4K stands for input rows (of up to 4096 values) in the padding of
// the vectorized im2col, with zeroGuard zero values on each side (see
// zeroGuard); it is never written.
var zeroRow4K [zeroGuard + 4096 + zeroGuard]float32

// im2colFast writes the column matrix of output rows [oy0, oy1) of one
// image (see Im2colRows) with the AVX-512 kernels for strides 1 and 2; it
// reports false when it cannot.
func im2colFast(g *ConvGeom, in, col []float32, ld, oy0, oy1 int) bool {
	s := g.Strides[0]
	if !cpu.avx512 || g.Strides[1] != s || (s != 1 && s != 2) || g.W > len(zeroRow4K)-2*zeroGuard {
		return false
	}
	// the band reads input rows from base = oy0*s - pt on: start the planes
	// there (or keep the top padding when base < 0)
	base := oy0*s - g.Pads[0]
	shift, top := 0, g.Pads[0]-oy0*s
	if base > 0 {
		shift, top = base, 0
	}
	h, oh := g.H-shift, oy1-oy0
	if h < 1 {
		return false
	}
	hw := oh * g.OW
	_, _ = in[g.C*g.H*g.W-1], col[(g.C*g.KH*g.KW-1)*ld+hw-1]
	row := 0
	for c := 0; c < g.C; c++ {
		plane := &in[c*g.H*g.W+shift*g.W]
		for ky := 0; ky < g.KH; ky++ {
			for kx := 0; kx < g.KW; kx++ {
				pt, pl := top-ky*g.Dilations[0], g.Pads[1]-kx*g.Dilations[1]
				if s == 1 {
					im2colS1AVX512(&col[row*ld], plane, &zeroRow4K[zeroGuard], h, g.W, oh, g.OW, pt, pl)
				} else {
					im2colS2AVX512(&col[row*ld], plane, &zeroRow4K[zeroGuard], h, g.W, oh, g.OW, pt, pl)
				}
				row++
			}
		}
	}
	return true
}

// segCopyFast copies rows between a 32-column panel or tile and 32/seglen
// batch items of seglen (4, 8 or 16) columns, stride values apart, rows ld
// apart on the item side; toPanel packs items into the panel, otherwise
// the tile is stored into the items. It reports false when it cannot.
func segCopyFast(toPanel bool, panel, items []float32, stride, ld, rows, seglen int) bool {
	if !cpu.avx512 || rows == 0 || (seglen != 4 && seglen != 8 && seglen != 16) {
		return false
	}
	_, _ = panel[rows*32-1], items[(32/seglen-1)*stride+(rows-1)*ld+seglen-1]
	if toPanel {
		packSeg32(&panel[0], &items[0], stride, ld, rows, seglen)
	} else {
		storeSeg32(&items[0], &panel[0], stride, ld, rows, seglen)
	}
	return true
}
