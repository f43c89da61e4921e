package kernels

import "fmt"

// PackedWeights is a constant weight matrix W (m x k, row-major: a 1x1
// convolution's [Cout, Cin]) stored as Wᵀ (k x m) in panels of nr columns,
// each panel k-major (nr values per k step, the last panel zero-padded):
// element (p, j) of Wᵀ is at f[(j/nr)*k*nr + p*nr + j%nr]. That is the
// layout the GEMM driver packs B into, so PointwisePixelMajor reads it in
// place for any depth block. Build it once with PackWeightsT.
type PackedWeights struct {
	f        []float32
	m, k, nr int
}

// pixelMajorDirectRows is the smallest plane (GEMM rows) for which
// PointwisePixelMajor reads the image in place instead of packing it (see
// gemmBlock).
const pixelMajorDirectRows = 128

// pixelMajorPlaneLimit is the largest plane PixelMajorPays accepts (the
// largest measured: 14x14).
const pixelMajorPlaneLimit = 256

// PixelMajorPays reports whether PointwisePixelMajor is expected to beat
// Conv2D for a 1x1 convolution with m output channels on planes of hw
// pixels with this machine's GEMM micro-kernel (mr x nr tiles): the
// channel-major tiles of Conv2D put nr pixels on the vector lanes (the
// 16-column kernels, where present, take a last panel of at most 16), the
// pixel-major ones nr channels, with pixels in rows of mr. It holds when m
// fills whole lane panels and the pixel rows, rounded up to mr, are fewer
// than the pixel columns rounded up to the lanes, on planes of at most 256
// pixels: MobileNetV1 1.0 at batch 1 (one thread, AVX-512, 8x32 tiles,
// sums of per-step thread CPU minima) runs its 7x7 pointwise convolutions
// (49 of 64 lanes used channel-major, 49 of 56 rows pixel-major) 7-12%
// faster and its 14x14 ones (196 of 208, 196 of 200) 5-6% faster. The
// packed weights are a second copy of the weights of those layers.
func PixelMajorPays(hw, m int) bool {
	return pixelMajorPays(bestKernel, hw, m)
}

func pixelMajorPays(spec *kernelSpec, hw, m int) bool {
	if hw < 2 || hw > pixelMajorPlaneLimit || m%spec.nr != 0 {
		return false
	}
	cols := hw / spec.nr * spec.nr
	if rest := hw - cols; rest > 0 {
		cols += spec.nr
		if rest <= 16 && spec.edge != nil {
			cols += 16 - spec.nr
		}
	}
	return roundUp(hw, spec.mr) < cols
}

// PackWeightsT packs W (m x k, row-major) for PointwisePixelMajor on
// Contexts using this machine's GEMM micro-kernel.
func PackWeightsT(w []float32, m, k int) *PackedWeights {
	return packWeightsT(w, m, k, bestKernel.nr)
}

func packWeightsT(w []float32, m, k, nr int) *PackedWeights {
	if m < 0 || k < 0 || len(w) < m*k {
		panic(fmt.Sprintf("kernels: PackWeightsT: %d weights for %dx%d", len(w), m, k))
	}
	panels := (m + nr - 1) / nr
	f := make([]float32, panels*k*nr)
	for j := 0; j < m; j++ {
		panel := f[(j/nr)*k*nr+j%nr:]
		row := w[j*k : j*k+k]
		for p, v := range row {
			panel[p*nr] = v
		}
	}
	return &PackedWeights{f: f, m: m, k: k, nr: nr}
}

// PointwisePixelMajor computes a 1x1 convolution of one NCHW image x (k
// channels of hw pixels) with the packed weights pw (m x k) into out (m
// channels of hw pixels), then applies ep (RowBias per output channel):
// out = W*X, computed as outᵀ (hw x m) = Xᵀ*Wᵀ with the GEMM's vector
// lanes along the output channels instead of the pixels, and transposed
// back. On small planes (7x7: 49 pixels) the lanes of pixel-major tiles
// are all used where channel-major ones waste a quarter. Every output is
// the same sum in the same order as Conv2D's, so the results are the same
// bits. It reports false, doing nothing, when pw was packed for another
// micro-kernel than ctx's.
func (ctx *Context) PointwisePixelMajor(hw int, x []float32, pw *PackedWeights, out []float32, ep Epilogue) bool {
	m, k := pw.m, pw.k
	if pw.nr != ctx.kern.nr {
		return false
	}
	if len(x) < k*hw || len(out) < m*hw {
		panic(fmt.Sprintf("kernels: PointwisePixelMajor buffers too small (x %d, out %d) for %d pixels, %dx%d weights", len(x), len(out), hw, m, k))
	}
	if hw == 0 || m == 0 {
		return true
	}
	ep.check(m, hw)
	ctx.colT = grow(ctx.colT, hw*m)
	ct := ctx.colT[:hw*m]
	g := gemmArgs{transA: true, m: hw, n: m, k: k, alpha: 1, a: x, lda: hw, b: pw.f, ldb: m, c: ct, ldc: m, nb: m, kb: k, bPacked: true}
	ctx.runGemm(&g, batchArgs{count: 1})
	// out[j*hw+i] = ct[i*m+j]: the first hw/8*8 pixels by vector
	// transposes, the rest here.
	done := 0
	if cols := hw / 8 * 8; cols > 0 && packTransFast(out, ct, m, m, hw, cols) == m/8*8 {
		done = cols
		for j := m / 8 * 8; j < m; j++ {
			for i := 0; i < done; i++ {
				out[j*hw+i] = ct[i*m+j]
			}
		}
	}
	for i := done; i < hw; i++ {
		src := ct[i*m : i*m+m]
		for j, v := range src {
			out[j*hw+i] = v
		}
	}
	if ep.active() {
		ep.applyTile(out, hw, m, hw, 0, 0)
	}
	return true
}
