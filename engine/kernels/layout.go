package kernels

import "fmt"

// DepthwiseConv2DLayout is DepthwiseConv2DEx for activations that may be
// stored channel-major across the batch. An activation of n images with C
// channels of H x W planes is image-major (NCHW) when plane (i, c) starts
// at (i*C + c)*H*W, and channel-major (CNHW) when it starts at
// (c*n + i)*H*W: the planes of one channel's n images are then one run of
// n*H*W values, which a pointwise convolution reads as a [C][n*H*W] matrix
// without copying. inCN and outCN choose the layout of in and out
// separately.
//
// Every output value is computed with the same operations, in the same
// order, as by DepthwiseConv2DEx on the same planes, so the results are
// bit-identical to it; the one exception is a geometry for which
// DepthwiseTinyPlanes reports true, where only inCN == outCN keeps the
// bits (the mixed layouts run the general per-plane kernel).
func DepthwiseConv2DLayout(ctx *Context, g ConvGeom, n int, in, weight, out []float32, ep Epilogue, inCN, outCN bool) {
	depthwiseForward(ctx, g, n, in, weight, out, ep, inCN, outCN)
}

// DepthwiseTinyPlanes reports whether the forward depthwise convolution of
// g runs the kernel for planes of at most 16 values, which packs several
// planes into one vector; DepthwiseConv2DLayout gives bit-identical
// results for it only when input and output share their layout.
func DepthwiseTinyPlanes(g ConvGeom) bool {
	_, _, _, ok := dwTinyLayout(&g)
	return ok
}

// planeStrides returns the distance, in values, between the planes of
// consecutive images of one channel and between those of consecutive
// channels of one image, for n images of c channels of plane values in
// NCHW (cn false) or CNHW (cn true).
func planeStrides(n, c, plane int, cn bool) (img, ch int) {
	if cn {
		return plane, n * plane
	}
	return c * plane, plane
}

// ScaleRows writes dst[i*ldd+j] = src[i*lds+j]*d[i] + b[i] for i < rows
// and j < cols (b nil: 0), rounding the product and then the sum as the
// scalar expression does: the diag residual of an LPR module for a CNHW
// source, whose rows are one channel of every image.
func ScaleRows(dst []float32, ldd int, src []float32, lds, rows, cols int, d, b []float32) {
	if rows <= 0 || cols <= 0 {
		return
	}
	if len(dst) < (rows-1)*ldd+cols || len(src) < (rows-1)*lds+cols || len(d) < rows || (b != nil && len(b) < rows) {
		panic(fmt.Sprintf("kernels: ScaleRows buffers too small (dst %d, src %d, d %d, b %d) for %dx%d", len(dst), len(src), len(d), len(b), rows, cols))
	}
	if b == nil {
		var zero [64]float32
		for i := 0; i < rows; i += len(zero) {
			k := min(len(zero), rows-i)
			ScaleRows(dst[i*ldd:], ldd, src[i*lds:], lds, k, cols, d[i:], zero[:k])
		}
		return
	}
	if scaleRowsFast(dst, ldd, src, lds, rows, cols, d, b) {
		return
	}
	for i := 0; i < rows; i++ {
		a, b0 := d[i], b[i]
		s, o := src[i*lds:i*lds+cols], dst[i*ldd:i*ldd+cols]
		for j, v := range s {
			o[j] = v*a + b0
		}
	}
}
