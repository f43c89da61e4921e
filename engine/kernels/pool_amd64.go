//go:build amd64 && !purego

package kernels

import "math"

// negInfRow4K stands for input rows (of up to 4096 values) in the vertical
// padding of the max-pooling kernels, with zeroGuard values on each side
// (see zeroGuard); it is filled once at start-up and only read afterwards.
var negInfRow4K = func() (r [zeroGuard + 4096 + zeroGuard]float32) {
	for i := range r {
		r[i] = float32(math.Inf(-1))
	}
	return r
}()

// maxPool3x3Fast runs the AVX-512 max-pooling kernels (see MaxPool3x3);
// it reports false also when the input holds a NaN (the kernels would drop
// it).
func maxPool3x3Fast(g *ConvGeom, planes int, in, out []float32) bool {
	if !cpu.avx512 || !dw3x3Geom(g) || g.W > len(negInfRow4K)-2*zeroGuard || g.OH < 1 || g.OW < 1 {
		return false
	}
	if planes == 0 {
		return true
	}
	hw, ohw := g.H*g.W, g.OH*g.OW
	_, _ = in[planes*hw-1], out[planes*ohw-1]
	row := &negInfRow4K[zeroGuard]
	var nan uint32
	if g.Strides[0] == 1 {
		nan = maxPool3x3S1AVX512(&out[0], &in[0], row, g.H, g.W, g.OH, g.OW, g.Pads[0], g.Pads[1], planes, hw, ohw)
	} else {
		nan = maxPool3x3S2AVX512(&out[0], &in[0], row, g.H, g.W, g.OH, g.OW, g.Pads[0], g.Pads[1], planes, hw, ohw)
	}
	// VRANGEPS drops NaN operands: leave planes with a NaN to the caller
	return nan == 0
}
