//go:build purego || !amd64

package kernels

// bestKernel is the GEMM micro-kernel for this build: the portable one.
var bestKernel = &genericKernel

// kernelsAvailable lists every GEMM micro-kernel this CPU can run.
func kernelsAvailable() []*kernelSpec { return []*kernelSpec{&genericKernel} }

// vecDot returns sum x[i]*y[i] (len(y) >= len(x)).
func vecDot(x, y []float32) float32 { return dotGeneric(x, y) }

// vecAxpy computes y += alpha*x (len(y) >= len(x)).
func vecAxpy(alpha float32, x, y []float32) { axpyGeneric(alpha, x, y) }

// packCopyFast has no vector version in this build.
func packCopyFast(dst, src []float32, ldb, kc, nr int) bool { return false }

// packTransFast has no vector version in this build.
func packTransFast(dst, src []float32, ld, kc, nr, cols int) int { return 0 }

// biasActTile applies a fused epilogue to a tile (see Epilogue).
func biasActTile(c []float32, ldc, rows, cols int, rowBias, colBias []float32, lo, hi float32) {
	biasActTileGeneric(c, ldc, rows, cols, rowBias, colBias, lo, hi)
}

// packGatherFast has no vector version in this build.
func packGatherFast(dst, src []float32, offs *[32]int32, maxOff, ldb, kc int) bool { return false }

// scatterTileFast has no vector version in this build.
func scatterTileFast(c []float32, offs *[32]int32, maxOff int, tile []float32, ldc, rows, cols int) bool {
	return false
}

// gatherStride2 copies src[2*i] into dst[i] for i < len(dst).
func gatherStride2(dst, src []float32) {
	for i := range dst {
		dst[i] = src[2*i]
	}
}

// im2colFast has no vector version in this build.
func im2colFast(g *ConvGeom, in, col []float32, ld, oy0, oy1 int) bool { return false }

// segCopyFast has no vector version in this build.
func segCopyFast(toPanel bool, panel, items []float32, stride, ld, rows, seglen int) bool {
	return false
}
