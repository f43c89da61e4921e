//go:build purego || !amd64

package kernels

// dw3x3Forward has no vectorized version in this build.
func dw3x3Forward(s *threadScratch, g *ConvGeom, flat []uint16, in, w []float32, bias float32, out []float32, count, inStride, outStride int, clip bool, lo, hi float32) bool {
	return false
}

// dwFlatMasks has no use in this build.
func (ctx *Context) dwFlatMasks(g *ConvGeom) []uint16 { return nil }

// dw3x3WeightGrad has no vectorized version in this build.
func dw3x3WeightGrad(s *threadScratch, g *ConvGeom, in, dout, acc []float32, count, inStride, outStride int) bool {
	return false
}

// dw3x3InputGrad has no vectorized version in this build.
func dw3x3InputGrad(s *threadScratch, g *ConvGeom, w, dout, din []float32) bool {
	return false
}

// dwTinyTask has no use in this build.
type dwTinyTask struct{}

// dwTiny has no vectorized version in this build.
func (ctx *Context) dwTiny(g *ConvGeom, n int, in, weight, bias, out []float32, lo, hi float32) bool {
	return false
}

// dwTinyGradTask has no use in this build.
type dwTinyGradTask struct{}

// dwTinyBackward has no vectorized version in this build.
func (ctx *Context) dwTinyBackward(g *ConvGeom, n int, in, weight, dout, din, dweight []float32) bool {
	return false
}

// dw3x3FlatChans has no vector version in this build.
func dw3x3FlatChans(g *ConvGeom, flat []uint16, in, w, bias, out []float32, count, inStride, outStride int, clip bool, lo, hi float32) bool {
	return false
}

// dw3x3FlatS2Chans has no vector version in this build.
func dw3x3FlatS2Chans(s *threadScratch, g *ConvGeom, flat []uint16, in, w, bias, out []float32, count, inStride, outStride int, clip bool, lo, hi float32) bool {
	return false
}
