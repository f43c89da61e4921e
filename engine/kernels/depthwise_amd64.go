//go:build amd64 && !purego

package kernels

// dw3x3Forward convolves one plane with the AVX-512 3x3 kernels; it
// reports false when the CPU or the geometry is not supported.
func dw3x3Forward(s *threadScratch, g *ConvGeom, in, w []float32, bias float32, out []float32) bool {
	if !cpu.avx512 || !dw3x3Geom(g) {
		return false
	}
	zero := s.zeroRow(g.W)
	_, _, _ = w[8], out[g.OH*g.OW-1], in[g.H*g.W-1]
	if g.Strides[0] == 1 {
		dw3x3DirectS1AVX512(&out[0], &in[0], &zero[0], &w[0], bias, g.H, g.W, g.OH, g.OW, g.Pads[0], g.Pads[1])
	} else {
		dw3x3DirectS2AVX512(&out[0], &in[0], &zero[0], &w[0], bias, g.H, g.W, g.OH, g.OW, g.Pads[0], g.Pads[1])
	}
	return true
}

// dw3x3WeightGrad adds the lane-wise weight-gradient partial sums of one
// plane into acc (9*16 values); it reports false when not supported.
func dw3x3WeightGrad(s *threadScratch, g *ConvGeom, in, dout, acc []float32) bool {
	if !cpu.avx512 || !dw3x3Geom(g) {
		return false
	}
	zero := s.zeroRow(g.W)
	_, _, _ = acc[9*16-1], dout[g.OH*g.OW-1], in[g.H*g.W-1]
	if g.Strides[0] == 1 {
		dw3x3DirectGradS1AVX512(&acc[0], &in[0], &zero[0], &dout[0], g.H, g.W, g.OH, g.OW, g.Pads[0], g.Pads[1])
	} else {
		dw3x3DirectGradS2AVX512(&acc[0], &in[0], &zero[0], &dout[0], g.H, g.W, g.OH, g.OW, g.Pads[0], g.Pads[1])
	}
	return true
}

// dw3x3InputGrad overwrites din (one plane) with the input gradient as a
// stride-1 convolution of the upsampled, padded dout with the flipped
// kernel; it reports false when not supported.
func dw3x3InputGrad(s *threadScratch, g *ConvGeom, w, dout, din []float32) bool {
	if !cpu.avx512 || !dw3x3Geom(g) {
		return false
	}
	d := dwPaddedGrad(g)
	p := s.padGrad.get(g, d)
	padGrad(p, d, dout, g)
	var flipped [9]float32
	for i := range flipped {
		flipped[i] = w[8-i]
	}
	_ = din[g.H*g.W-1]
	dw3x3s1AVX512(&din[0], &p[0], d.ldp, &flipped[0], 0, g.W, g.H)
	return true
}
