//go:build amd64 && !purego

package kernels

import "math"

// dw3x3Forward convolves count planes of one channel (in and out planes
// inStride and outStride values apart) with the AVX-512 3x3 kernels, and
// with clip clamps the outputs to [lo, hi]; flat holds the lane masks of
// dwFlatMasks when g suits the flat kernel (nil otherwise). It reports
// false when the CPU or the geometry is not supported.
func dw3x3Forward(s *threadScratch, g *ConvGeom, flat []uint16, in, w []float32, bias float32, out []float32, count, inStride, outStride int, clip bool, lo, hi float32) bool {
	if !cpu.avx512 || !dw3x3Geom(g) {
		return false
	}
	if count == 0 {
		return true
	}
	_, _, _ = w[8], out[(count-1)*outStride+g.OH*g.OW-1], in[(count-1)*inStride+g.H*g.W-1]
	if flat != nil && g.Strides[0] == 1 {
		nvec := (g.H*g.W + 15) / 16
		_ = flat[nvec*10-1]
		if clip {
			dw3x3FlatClipAVX512(&out[0], &in[0], &w[0], bias, &flat[0], g.W, nvec, count, inStride, outStride, lo, hi)
		} else {
			dw3x3FlatAVX512(&out[0], &in[0], &w[0], bias, &flat[0], g.W, nvec, count, inStride, outStride)
		}
		return true
	}
	zero := s.zeroRow(g.W)
	if g.Strides[0] == 2 && g.OW <= 8 {
		// two output rows per vector (see dwPairMasks)
		masks := dwPairMasks(g)
		if clip {
			dw3x3PairClipAVX512(&out[0], &in[0], &zero[0], &w[0], bias, g.H, g.W, g.OH, g.OW, g.Pads[0], g.Pads[1], masks, count, inStride, outStride, lo, hi)
		} else {
			dw3x3PairAVX512(&out[0], &in[0], &zero[0], &w[0], bias, g.H, g.W, g.OH, g.OW, g.Pads[0], g.Pads[1], masks, count, inStride, outStride)
		}
		return true
	}
	switch {
	case g.Strides[0] == 1 && clip:
		dw3x3DirectS1ClipAVX512(&out[0], &in[0], &zero[0], &w[0], bias, g.H, g.W, g.OH, g.OW, g.Pads[0], g.Pads[1], count, inStride, outStride, lo, hi)
	case g.Strides[0] == 1:
		dw3x3DirectS1AVX512(&out[0], &in[0], &zero[0], &w[0], bias, g.H, g.W, g.OH, g.OW, g.Pads[0], g.Pads[1], count, inStride, outStride)
	case clip:
		dw3x3DirectS2ClipAVX512(&out[0], &in[0], &zero[0], &w[0], bias, g.H, g.W, g.OH, g.OW, g.Pads[0], g.Pads[1], count, inStride, outStride, lo, hi)
	default:
		dw3x3DirectS2AVX512(&out[0], &in[0], &zero[0], &w[0], bias, g.H, g.W, g.OH, g.OW, g.Pads[0], g.Pads[1], count, inStride, outStride)
	}
	return true
}

// dw3x3FlatChans convolves the planes of count consecutive channels of
// one image (in and out planes inStride and outStride values apart), each
// with its own 3x3 filter (9 values of w) and bias, with the flat stride-1
// kernel and the masks flat of dwFlatMasks, and with clip clamps the
// outputs to [lo, hi]: the same bits as dw3x3Forward channel by channel,
// without a call per channel (512 channels of 14x14 planes took 9% less,
// 1024 of 7x7 26%; thread CPU minima in MobileNetV1 1.0). It reports
// false when flat is nil.
func dw3x3FlatChans(g *ConvGeom, flat []uint16, in, w, bias, out []float32, count, inStride, outStride int, clip bool, lo, hi float32) bool {
	if flat == nil || !cpu.avx512 || g.Strides[0] != 1 {
		return false
	}
	if count == 0 {
		return true
	}
	nvec := (g.H*g.W + 15) / 16
	_, _, _, _, _ = flat[nvec*10-1], w[count*9-1], bias[count-1], out[(count-1)*outStride+g.H*g.W-1], in[(count-1)*inStride+g.H*g.W-1]
	if clip {
		dw3x3FlatChansClipAVX512(&out[0], &in[0], &w[0], &bias[0], &flat[0], g.W, nvec, count, inStride, outStride, lo, hi)
	} else {
		dw3x3FlatChansAVX512(&out[0], &in[0], &w[0], &bias[0], &flat[0], g.W, nvec, count, inStride, outStride)
	}
	return true
}

// dw3x3FlatS2Chans is dw3x3FlatChans for stride 2 (masks flat of
// dwFlatMasks for a stride-2 g): each plane is first split into the four
// sub-planes of its even and odd rows and columns, in s.buf, so that the
// outputs of a vector read each tap at one offset, as at stride 1 (the
// same bits as dw3x3Forward channel by channel). It reports false when
// flat is nil.
func dw3x3FlatS2Chans(s *threadScratch, g *ConvGeom, flat []uint16, in, w, bias, out []float32, count, inStride, outStride int, clip bool, lo, hi float32) bool {
	if flat == nil || !cpu.avx512 || g.Strides[0] != 2 {
		return false
	}
	if count == 0 {
		return true
	}
	oplane := g.OH * g.OW
	nvec := (oplane + 15) / 16
	// a sub-plane: ceil(H/2) rows of OW values, 16 of slack, rounded to
	// whole vectors
	sub := roundUp((g.H+1)/2*g.OW+16, 16)
	s.buf = grow(s.buf, 4*sub)
	_, _, _, _, _ = flat[nvec*10-1], w[count*9-1], bias[count-1], out[(count-1)*outStride+oplane-1], in[(count-1)*inStride+g.H*g.W-1]
	if clip {
		dw3x3FlatS2ChansClipAVX512(&out[0], &in[0], &s.buf[0], &w[0], &bias[0], &flat[0], g.H, g.W, g.OW, sub, nvec, count, inStride, outStride, lo, hi)
	} else {
		dw3x3FlatS2ChansAVX512(&out[0], &in[0], &s.buf[0], &w[0], &bias[0], &flat[0], g.H, g.W, g.OW, sub, nvec, count, inStride, outStride)
	}
	return true
}

// dwPairMasks returns the column masks of the paired-row stride-2 kernel:
// bits 16*kx to 16*kx+15 select the lanes e of a 16-value load from input
// column e+kx-pl that lie inside the plane. The kernel uses the even lanes
// e = 2x of output column x (at most 8 columns).
func dwPairMasks(g *ConvGeom) int {
	masks := 0
	for kx := 0; kx < 3; kx++ {
		for e := 0; e < 16; e++ {
			if c := e + kx - g.Pads[1]; c >= 0 && c < g.W {
				masks |= 1 << (16*kx + e)
			}
		}
	}
	return masks
}

// dwFlatMaxPlane is the largest plane run by the flat kernel (its masks
// take 20 bytes per 16 values). MobileNetV1 1.0's stride-1 layers (one
// thread, thread CPU minima of 200 runs, flat against row kernel): 7x7
// 35 against 65 us, 14x14 52 against 61, 28x28 78 against 94, 56x56 141
// against 164, 112x112 136 against 138: rows that run on across vector
// lanes waste none, and a plane has no per-row set-up.
const dwFlatMaxPlane = 1 << 16

// dwFlatMasks returns the masks of the flat kernels for g, 10 per vector
// of 16 outputs of the flattened output plane: bit l of mask v*10+k (k =
// ky*3+kx < 9) is set when output 16v+l lies in the plane and reads tap k
// inside the input plane, and bit l of mask v*10+9 when output 16v+l lies
// in the plane (the lanes stored). It returns nil when g suits neither
// kernel: 3x3 with at most dwFlatMaxPlane outputs, and stride 1 with pads
// 1 on every side (dw3x3FlatChans) or stride 2 with pads 1 at the top and
// left and output rows of ceil(W/2) values (dw3x3FlatS2Chans). The masks
// depend only on the plane shapes and the stride; they are kept in ctx for
// the next call.
func (ctx *Context) dwFlatMasks(g *ConvGeom) []uint16 {
	oplane := g.OH * g.OW
	if !cpu.avx512 || !dw3x3Geom(g) || oplane == 0 || oplane > dwFlatMaxPlane {
		return nil
	}
	s := g.Strides[0]
	switch {
	case s == 1 && g.Pads == [4]int{1, 1, 1, 1}:
	case s == 2 && g.Pads[0] == 1 && g.Pads[1] == 1 && g.OW == (g.W+1)/2 && g.OH <= (g.H+1)/2:
	default:
		return nil
	}
	key := [5]int{g.H, g.W, s, g.OH, g.OW}
	if m, ok := ctx.dwFlat[key]; ok {
		return m
	}
	nvec := (oplane + 15) / 16
	buf := make([]uint16, nvec*10)
	for v := 0; v < nvec; v++ {
		for k := 0; k < 10; k++ {
			ky, kx := k/3, k%3
			var m uint16
			for l := 0; l < 16; l++ {
				o := 16*v + l
				if o >= oplane {
					break
				}
				iy, ix := s*(o/g.OW)+ky-1, s*(o%g.OW)+kx-1
				if k == 9 || iy >= 0 && iy < g.H && ix >= 0 && ix < g.W {
					m |= 1 << l
				}
			}
			buf[v*10+k] = m
		}
	}
	if ctx.dwFlat == nil {
		ctx.dwFlat = map[[5]int][]uint16{}
	}
	ctx.dwFlat[key] = buf
	return buf
}

// dw3x3WeightGrad adds the lane-wise weight-gradient partial sums of count
// planes (in and dout planes inStride and outStride values apart) into acc
// (9*16 values); it reports false when not supported.
func dw3x3WeightGrad(s *threadScratch, g *ConvGeom, in, dout, acc []float32, count, inStride, outStride int) bool {
	if !cpu.avx512 || !dw3x3Geom(g) {
		return false
	}
	if count == 0 {
		return true
	}
	zero := s.zeroRow(g.W)
	_, _, _ = acc[9*16-1], dout[(count-1)*outStride+g.OH*g.OW-1], in[(count-1)*inStride+g.H*g.W-1]
	if g.Strides[0] == 1 {
		dw3x3DirectGradS1AVX512(&acc[0], &in[0], &zero[0], &dout[0], g.H, g.W, g.OH, g.OW, g.Pads[0], g.Pads[1], count, inStride, outStride)
	} else {
		dw3x3DirectGradS2AVX512(&acc[0], &in[0], &zero[0], &dout[0], g.H, g.W, g.OH, g.OW, g.Pads[0], g.Pads[1], count, inStride, outStride)
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

// dwTinyTask runs dwTinyAVX512 (3x3 depthwise forward pass or input
// gradient for planes of at most 16 values) over ranges of images.
type dwTinyTask struct {
	in, out               []float32
	inImg, outImg         int // values per image of in and out
	wv                    []float32
	idx                   *[9 * 16]int32
	groups, inStep, outSt int
	masks                 uint64
	lo, hi                float32
}

// dwTinyLayout returns how many channels share a vector (per), the number
// of channel groups and the channels of the last group, or ok false when
// the planes of g are too large.
func dwTinyLayout(g *ConvGeom) (per, groups, last int, ok bool) {
	plane, ohow := g.H*g.W, g.OH*g.OW
	if !cpu.avx512 || !dw3x3Geom(g) || plane > 16 || ohow > 16 {
		return 0, 0, 0, false
	}
	per = min(16/plane, 16/ohow)
	groups = (g.C + per - 1) / per
	return per, groups, g.C - (groups-1)*per, true
}

// dwTinyIndex fills idx with the lane permutations of the 9 taps: for the
// forward pass, output lane j reads input lane idx[k*16+j]; with inverse,
// input lane i receives output lane idx[k*16+i]. 16 selects zero.
func dwTinyIndex(g *ConvGeom, per int, idx *[9 * 16]int32, inverse bool) {
	plane, ohow := g.H*g.W, g.OH*g.OW
	sh, sw := g.Strides[0], g.Strides[1]
	for k := 0; k < 9; k++ {
		ky, kx := k/3, k%3
		for j := 0; j < 16; j++ {
			idx[k*16+j] = 16
			if !inverse {
				if j >= per*ohow {
					continue
				}
				p, o := j/ohow, j%ohow
				iy := (o/g.OW)*sh - g.Pads[0] + ky
				ix := (o%g.OW)*sw - g.Pads[1] + kx
				if iy >= 0 && iy < g.H && ix >= 0 && ix < g.W {
					idx[k*16+j] = int32(p*plane + iy*g.W + ix)
				}
				continue
			}
			if j >= per*plane {
				continue
			}
			p, i := j/plane, j%plane
			ny, nx := i/g.W+g.Pads[0]-ky, i%g.W+g.Pads[1]-kx
			if ny < 0 || nx < 0 || ny%sh != 0 || nx%sw != 0 {
				continue
			}
			oy, ox := ny/sh, nx/sw
			if oy < g.OH && ox < g.OW {
				idx[k*16+j] = int32(p*ohow + oy*g.OW + ox)
			}
		}
	}
}

// dwTinyWeights lays out, per channel group, a bias vector and the 9 tap
// vectors with the value of the channel of each lane (lanes per channel:
// lanesPer), into ctx.dwW16.
func (ctx *Context) dwTinyWeights(g *ConvGeom, per, groups, lanesPer int, weight, bias []float32) []float32 {
	ctx.dwW16 = grow(ctx.dwW16, groups*160)
	wv := ctx.dwW16
	clear(wv)
	for c := 0; c < g.C; c++ {
		grp, p := c/per, c%per
		v := wv[grp*160 : grp*160+160]
		for o := 0; o < lanesPer; o++ {
			j := p*lanesPer + o
			if bias != nil {
				v[j] = bias[c]
			}
			for k := 0; k < 9; k++ {
				v[(1+k)*16+j] = weight[c*9+k]
			}
		}
	}
	return wv
}

func laneMask(bits int) uint64 { return 1<<bits - 1 }

// dwTiny runs the forward pass for planes of at most 16 values, several
// channels per vector, and reports whether it did.
func (ctx *Context) dwTiny(g *ConvGeom, n int, in, weight, bias, out []float32, lo, hi float32) bool {
	per, groups, last, ok := dwTinyLayout(g)
	if !ok {
		return false
	}
	plane, ohow := g.H*g.W, g.OH*g.OW
	dwTinyIndex(g, per, &ctx.dwIdx, false)
	wv := ctx.dwTinyWeights(g, per, groups, ohow, weight, bias)
	t := &ctx.dwTiny1
	*t = dwTinyTask{in: in, out: out, inImg: g.C * plane, outImg: g.C * ohow, wv: wv, idx: &ctx.dwIdx, groups: groups,
		inStep: per * plane, outSt: per * ohow,
		masks: laneMask(per*plane) | laneMask(last*plane)<<16 | laneMask(per*ohow)<<32 | laneMask(last*ohow)<<48,
		lo:    lo, hi: hi}
	threads := ctx.threads
	if n*g.C*ohow*9 < dwParallelMinMACs {
		threads = 1
	}
	ctx.parallel(t, n, threads)
	*t = dwTinyTask{}
	return true
}

func (t *dwTinyTask) run(lo, hi, tid int) {
	if hi <= lo {
		return
	}
	in := t.in[lo*t.inImg : hi*t.inImg]
	out := t.out[lo*t.outImg : hi*t.outImg]
	_ = t.wv[t.groups*160-1]
	dwTinyAVX512(&out[0], &in[0], &t.wv[0], &t.idx[0], hi-lo, t.groups, t.inStep, t.outSt, t.masks, t.lo, t.hi)
}

// dwTinyGradTask accumulates the weight gradient of tiny planes over
// ranges of images into per-thread lane sums.
type dwTinyGradTask struct {
	ctx                   *Context
	in, dout              []float32
	inImg, outImg         int
	idx                   *[9 * 16]int32
	groups, inStep, outSt int
	masks                 uint64
}

func (t *dwTinyGradTask) run(lo, hi, tid int) {
	if hi <= lo {
		return
	}
	acc := t.ctx.scratch[tid].buf2[:t.groups*144]
	in := t.in[lo*t.inImg : hi*t.inImg]
	dout := t.dout[lo*t.outImg : hi*t.outImg]
	dwTinyGradAVX512(&acc[0], &in[0], &dout[0], &t.idx[0], hi-lo, t.groups, t.inStep, t.outSt, t.masks)
}

// dwTinyBackward computes din and dweight (either may be nil) of a 3x3
// depthwise convolution of planes of at most 16 values, and reports
// whether it did.
func (ctx *Context) dwTinyBackward(g *ConvGeom, n int, in, weight, dout, din, dweight []float32) bool {
	per, groups, last, ok := dwTinyLayout(g)
	if !ok || n == 0 {
		return false
	}
	plane, ohow := g.H*g.W, g.OH*g.OW
	threads := ctx.threads
	if n*g.C*ohow*9 < dwParallelMinMACs {
		threads = 1
	}
	if din != nil {
		dwTinyIndex(g, per, &ctx.dwIdx, true)
		wv := ctx.dwTinyWeights(g, per, groups, plane, weight, nil)
		t := &ctx.dwTiny1
		*t = dwTinyTask{in: dout, out: din, inImg: g.C * ohow, outImg: g.C * plane, wv: wv, idx: &ctx.dwIdx, groups: groups,
			inStep: per * ohow, outSt: per * plane,
			masks: laneMask(per*ohow) | laneMask(last*ohow)<<16 | laneMask(per*plane)<<32 | laneMask(last*plane)<<48,
			lo:    float32(math.Inf(-1)), hi: float32(math.Inf(1))}
		ctx.parallel(t, n, threads)
		*t = dwTinyTask{}
	}
	if dweight != nil {
		dwTinyIndex(g, per, &ctx.dwIdx, false)
		for i := range ctx.scratch {
			s := &ctx.scratch[i]
			s.buf2 = grow(s.buf2, groups*144)
			clear(s.buf2)
		}
		t := &ctx.dwTinyGrad1
		*t = dwTinyGradTask{ctx: ctx, in: in, dout: dout, inImg: g.C * plane, outImg: g.C * ohow, idx: &ctx.dwIdx,
			groups: groups, inStep: per * plane, outSt: per * ohow,
			masks: laneMask(per*plane) | laneMask(last*plane)<<16 | laneMask(per*ohow)<<32 | laneMask(last*ohow)<<48}
		ctx.parallel(t, n, threads)
		*t = dwTinyGradTask{}
		for c := 0; c < g.C; c++ {
			grp, p := c/per, c%per
			for k := 0; k < 9; k++ {
				var sum float32
				for i := range ctx.scratch {
					lanes := ctx.scratch[i].buf2[grp*144+k*16+p*ohow : grp*144+k*16+(p+1)*ohow]
					for _, v := range lanes {
						sum += v
					}
				}
				dweight[c*9+k] = sum
			}
		}
	}
	return true
}
