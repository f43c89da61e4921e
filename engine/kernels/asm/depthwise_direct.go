package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Constants of the direct (unpadded) 3x3 depthwise kernels.
var dwIota, dwConst Mem

// dwConst offsets (int32 values 1, 2, 16, 17, 18, 32).
const (
	cOne, cTwo, c16, c17, c18, c32 = 0, 4, 8, 12, 16, 20
)

func directData() {
	dwIota = GLOBL("dwIota", RODATA|NOPTR)
	for i := 0; i < 16; i++ {
		DATA(4*i, U32(uint32(i)))
	}
	dwConst = GLOBL("dwConst", RODATA|NOPTR)
	for i, v := range []uint32{1, 2, 16, 17, 18, 32} {
		DATA(4*i, U32(v))
	}
}

// directPlane emits the shared structure of the direct 3x3 depthwise
// kernels: a loop over output rows (selecting the three input rows, or a
// zero row in the vertical padding) and over blocks of 16 outputs (masking
// the loads that fall into the horizontal padding). tap is called for every
// (ky, kx) with the 16 input values of that tap in v; block is called
// before the taps with the store mask, and done after them.
type directBody struct {
	begin func(kst Register, outOff Register)          // before the taps of a block
	tap   func(ky, kx int, v VecVirtual, kst Register) // one tap
	end   func(kst Register, outOff Register)          // after the taps of a block
	// nextImage, when set, loops over count images (parameters count and
	// inStride, in values): it advances the body's own pointers.
	nextImage func()
	// fill, when set, is the value of the taps in the horizontal padding
	// (merge-masked loads); otherwise they read zero.
	fill VecVirtual
}

func directPlane(name string, s int, body directBody) {
	inP := paramAddr("in")
	zeroP := paramAddr("zero")
	hP := paramAddr("h")
	ohP := paramAddr("oh")
	owP := paramAddr("ow")
	ptP := paramAddr("pt")

	l := newPlaneLanes(s)
	wd4 := loadBytes("wd")
	iy := GP64()
	oy := GP64()
	outOff := GP64() // byte offset of the current output block
	Label(name + "_image")
	MOVQ(ptP, iy)
	NEGQ(iy)
	XORQ(oy, oy)
	XORQ(outOff, outOff)

	Label(name + "_row")
	var rows [3]GPVirtual
	for ky := 0; ky < 3; ky++ {
		r := GP64()
		t := GP64()
		MOVQ(iy, t)
		if ky > 0 {
			ADDQ(Imm(uint64(ky)), t)
		}
		MOVQ(t, r)
		IMULQ(wd4, r)
		ADDQ(inP, r)
		CMPQ(t, hP)
		CMOVQCC(zeroP, r)
		rows[ky] = r
	}
	off, xv, oxv := l.rowStart()
	x := GP64()
	MOVQ(owP, x) // outputs left in this row

	Label(name + "_col")
	kst := K1
	VPCMPUD(Imm(1), l.owv, oxv, kst)
	klo := [3]Register{K2, K3, K4}
	khi := [3]Register{K5, K6, K7}
	t := ZMM()
	for kx := 0; kx < 3; kx++ {
		switch kx {
		case 0:
			VPCMPUD(Imm(1), l.wv, xv, klo[kx])
		case 1:
			VPADDD_BCST(dwConst.Offset(cOne), xv, t)
			VPCMPUD(Imm(1), l.wv, t, klo[kx])
		case 2:
			VPADDD_BCST(dwConst.Offset(cTwo), xv, t)
			VPCMPUD(Imm(1), l.wv, t, klo[kx])
		}
		if s == 2 {
			VPADDD_BCST(dwConst.Offset(c16+4*kx), xv, t)
			VPCMPUD(Imm(1), l.wv, t, khi[kx])
		}
	}
	body.begin(kst, outOff)
	v := ZMM()
	v2 := ZMM()
	for ky := 0; ky < 3; ky++ {
		for kx := 0; kx < 3; kx++ {
			m := Mem{Base: rows[ky], Index: off, Scale: 1, Disp: 4 * kx}
			maskedLoad(m, klo[kx], v, body.fill)
			if s == 2 {
				maskedLoad(m.Offset(64), khi[kx], v2, body.fill)
				VPERMT2PS(v2, l.idx, v)
			}
			body.tap(ky, kx, v, kst)
		}
	}
	body.end(kst, outOff)
	nextBlock(s, xv, oxv)
	ADDQ(U32(64*s), off)
	SUBQ(Imm(16), x)
	JLE(LabelRef(name + "_rowdone"))
	ADDQ(U32(64), outOff)
	JMP(LabelRef(name + "_col"))

	Label(name + "_rowdone")
	// outOff -> start of the next output row: add the outputs of the last block.
	ADDQ(Imm(16), x)
	LEAQ(Mem{Base: outOff, Index: x, Scale: 4}, outOff)
	ADDQ(Imm(uint64(s)), iy)
	INCQ(oy)
	CMPQ(oy, ohP)
	JL(LabelRef(name + "_row"))
	if body.nextImage != nil {
		// The argument slot "in" belongs to this frame: advance it.
		addParamBytes("inStride", inP)
		body.nextImage()
		DECQ(paramAddr("count"))
		JNE(LabelRef(name + "_image"))
	}
}

// maskedLoad loads the lanes of m selected by k into v, and sets the
// others to fill, or to zero when fill is nil.
func maskedLoad(m Mem, k Register, v, fill VecVirtual) {
	if fill == nil {
		VMOVUPS_Z(m, k, v)
		return
	}
	VMOVAPS(fill, v)
	VMOVUPS(m, k, v)
}

// dwDirectForward emits out[y*ow+x] = bias + sum w[ky*3+kx] *
// in[(s*y-pt+ky)*wd + s*x-pl+kx] over the taps inside the h x wd plane,
// for count planes inStride and outStride values apart (one channel of
// several images); zero must point to at least wd zero values.
//
// With clip, the signature ends with lo and hi and every output is clamped
// to [lo, hi] before the store with the operations of biasActTileAVX512
// without biases (x + 0, then max with lo, then min with hi), so that the
// bits are those of the separate pass.
func dwDirectForward(name string, s int, clip bool) {
	sig := "func(out, in, zero, w *float32, bias float32, h, wd, oh, ow, pt, pl, count, inStride, outStride int)"
	doc := fmt.Sprintf("%s computes a 3x3 stride-%d depthwise convolution of one plane.", name, s)
	if clip {
		sig = sig[:len(sig)-1] + ", lo, hi float32)"
		doc = fmt.Sprintf("%s computes a 3x3 stride-%d depthwise convolution of one plane, clamped to [lo, hi].", name, s)
	}
	leaf(name, sig, doc)
	outp := Load(Param("out"), GP64())
	clamp := clampOutput(clip)
	w := broadcastTaps(Load(Param("w"), GP64()))
	bias := ZMM()
	VBROADCASTSS(NewParamAddr("bias", 32), bias)
	acc := [3]VecVirtual{ZMM(), ZMM(), ZMM()}
	directPlane(name, s, directBody{
		begin: func(kst, outOff Register) {},
		tap:   func(ky, kx int, v VecVirtual, kst Register) { tapFMA(ky, kx, v, w, bias, acc) },
		end: func(kst, outOff Register) {
			sumRows(acc, clamp)
			VMOVUPS(acc[0], kst, Mem{Base: outp, Index: outOff, Scale: 1})
		},
		nextImage: func() { addParamBytes("outStride", outp) },
	})
	VZEROUPPER()
	RET()
}

// dwPrologue declares a depthwise forward kernel with signature sig (with
// clip, lo and hi appended and the doc saying so) and loads its out and
// in pointers, its 9 weights broadcast and its bias broadcast; clamp is
// clampOutput's.
func dwPrologue(name string, clip bool, sig, what string) (outp, inp Register, w [9]VecVirtual, bias VecVirtual, clamp func(VecVirtual)) {
	doc := name + " " + what + "."
	if clip {
		sig = sig[:len(sig)-1] + ", lo, hi float32)"
		doc = name + " " + what + ", clamped to [lo, hi]."
	}
	leaf(name, sig, doc)
	outp = Load(Param("out"), GP64())
	inp = Load(Param("in"), GP64())
	w = broadcastTaps(Load(Param("w"), GP64()))
	bias = ZMM()
	b, err := Param("bias").Resolve()
	if err != nil {
		panic(err)
	}
	VBROADCASTSS(b.Addr, bias)
	return outp, inp, w, bias, clampOutput(clip)
}

// nextPlaneOrReturn moves inp and outp to the next plane (parameters
// inStride and outStride) and loops to the label name_image while the
// parameter count is not exhausted; then it returns.
func nextPlaneOrReturn(name string, inp, outp Register) {
	addParamBytes("inStride", inp)
	addParamBytes("outStride", outp)
	DECQ(paramAddr("count"))
	JNE(LabelRef(name + "_image"))
	VZEROUPPER()
	RET()
}

// tapFMA adds tap (ky, kx) of a 3x3 filter w, with the input values v, to
// the accumulator of row ky: the first tap starts acc[0] at bias, the first
// of each other row starts its accumulator with a product.
func tapFMA(ky, kx int, v VecVirtual, w [9]VecVirtual, bias VecVirtual, acc [3]VecVirtual) {
	k := ky*3 + kx
	switch {
	case k == 0:
		VMOVAPS(bias, acc[0])
		VFMADD231PS(v, w[0], acc[0])
	case kx == 0:
		VMULPS(v, w[k], acc[ky])
	default:
		VFMADD231PS(v, w[k], acc[ky])
	}
}

// sumRows adds the row accumulators of tapFMA into acc[0] and clamps it.
func sumRows(acc [3]VecVirtual, clamp func(VecVirtual)) {
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[2], acc[0], acc[0])
	clamp(acc[0])
}

// clampOutput returns what clamps a vector of outputs to the parameters
// [lo, hi] as biasActTileAVX512 does without biases (nothing without clip).
func clampOutput(clip bool) func(v VecVirtual) {
	if !clip {
		return func(VecVirtual) {}
	}
	vlo, vhi := clampBounds()
	zero := ZMM()
	VPXORD(zero, zero, zero)
	return func(v VecVirtual) {
		VADDPS(zero, v, v)
		VMAXPS(v, vlo, v)
		VMINPS(v, vhi, v)
	}
}

// dwFlatForward emits the stride-1, pad-1 3x3 depthwise convolution of
// a plane flattened into vectors of 16 consecutive outputs (rows of any
// width wd run on from one vector lane to the next): output o (row o/wd,
// column o%wd) is bias + sum w[ky*3+kx] * in[o + (ky-1)*wd + kx-1] over
// the taps whose lane bit is set in masks[v*10 + ky*3+kx] (v = o/16, nvec
// vectors per plane; the caller sets the bits of the taps inside the
// plane), and masks[v*10+9] selects the lanes stored (the outputs inside
// the plane). count planes inStride and outStride values apart; with clip
// the outputs are clamped as dwDirectForward's.
//
// With chans, the count planes are consecutive channels, each with its own
// filter and bias: w holds 9 values per plane and bias (a pointer) one.
func dwFlatForward(name string, clip, chans bool) {
	var outp, inp, wp, bp Register
	var w [9]VecVirtual
	var bias VecVirtual
	var clamp func(VecVirtual)
	if chans {
		sig := "func(out, in, w, bias *float32, masks *uint16, wd, nvec, count, inStride, outStride int)"
		doc := name + " computes the 3x3 stride-1 depthwise convolutions of consecutive channels, their planes flattened into vectors of 16 outputs."
		if clip {
			sig = sig[:len(sig)-1] + ", lo, hi float32)"
			doc = doc[:len(doc)-1] + ", clamped to [lo, hi]."
		}
		leaf(name, sig, doc)
		outp = Load(Param("out"), GP64())
		inp = Load(Param("in"), GP64())
		wp = Load(Param("w"), GP64())
		bp = Load(Param("bias"), GP64())
		clamp = clampOutput(clip)
		bias = ZMM()
	} else {
		outp, inp, w, bias, clamp = dwPrologue(name, clip,
			"func(out, in, w *float32, bias float32, masks *uint16, wd, nvec, count, inStride, outStride int)",
			"computes the 3x3 stride-1 depthwise convolution of planes flattened into vectors of 16 outputs")
	}
	wd4 := loadBytes("wd")
	acc := [3]VecVirtual{ZMM(), ZMM(), ZMM()}
	v := ZMM()
	Label(name + "_image")
	if chans {
		w = broadcastTaps(wp)
		VBROADCASTSS(Mem{Base: bp}, bias)
		ADDQ(U32(36), wp)
		ADDQ(U32(4), bp)
	}
	p := GP64()
	o := GP64()
	mp := Load(Param("masks"), GP64())
	nv := Load(Param("nvec"), GP64())
	MOVQ(inp, p)
	MOVQ(outp, o)
	Label(name + "_vec")
	rows := [3]GPVirtual{GP64(), p, GP64()}
	MOVQ(p, rows[0])
	SUBQ(wd4, rows[0])
	LEAQ(Mem{Base: p, Index: wd4, Scale: 1}, rows[2])
	flatVector(name, func(ky, kx int) Mem { return Mem{Base: rows[ky], Disp: 4 * (kx - 1)} },
		w, bias, acc, v, clamp, p, o, mp, nv)
	nextPlaneOrReturn(name, inp, outp)
}

// flatVector emits the body of the flat kernels' loop over vectors of 16
// outputs, from its label name_vec on: the 10 masks of the vector at mp
// (see dwFlatForward), the 9 taps read at tap(ky, kx) under their masks
// and summed by tapFMA, the clamped sum stored at o under the last mask;
// then p and o move to the next vector, mp to its masks, and the loop
// repeats while nv (decremented) is not 0.
func flatVector(name string, tap func(ky, kx int) Mem, w [9]VecVirtual, bias VecVirtual, acc [3]VecVirtual, v VecVirtual, clamp func(VecVirtual), p, o, mp, nv Register) {
	// the 10 masks in three loads (the loads, not the FMAs, bound this
	// loop): masks 4j to 4j+3 in kq[j], each shifted down to the low 16
	// bits for its use
	kq := [3]Register{K1, K2, K3}
	KMOVQ(Mem{Base: mp}, kq[0])
	KMOVQ(Mem{Base: mp, Disp: 8}, kq[1])
	KMOVD(Mem{Base: mp, Disp: 16}, kq[2])
	tmp := [4]Register{K4, K5, K6, K7}
	mask := func(k int) Register {
		if k%4 == 0 {
			return kq[k/4]
		}
		t := tmp[k%4]
		KSHIFTRQ(Imm(uint64(16*(k%4))), kq[k/4], t)
		return t
	}
	for ky := 0; ky < 3; ky++ {
		for kx := 0; kx < 3; kx++ {
			VMOVUPS_Z(tap(ky, kx), mask(ky*3+kx), v)
			tapFMA(ky, kx, v, w, bias, acc)
		}
	}
	sumRows(acc, clamp)
	VMOVUPS(acc[0], mask(9), Mem{Base: o})
	ADDQ(U32(64), p)
	ADDQ(U32(64), o)
	ADDQ(U32(20), mp)
	DECQ(nv)
	JNE(LabelRef(name + "_vec"))
}

// dwDirectWeightGrad emits the lane-wise partial sums of the weight
// gradient, acc[(ky*3+kx)*16+l] += dout[y*ow+x] * in[...] for the outputs x
// of lane l, with the same addressing as dwDirectForward, over count planes
// inStride and outStride values apart.
func dwDirectWeightGrad(name string, s int) {
	leaf(name, "func(acc, in, zero, dout *float32, h, wd, oh, ow, pt, pl, count, inStride, outStride int)",
		fmt.Sprintf("%s accumulates the 3x3 stride-%d depthwise weight gradient of one plane.", name, s))
	accp := Load(Param("acc"), GP64())
	dp := Load(Param("dout"), GP64())
	acc := loadTapSums(accp)
	d := ZMM()
	directPlane(name, s, directBody{
		begin: func(kst, outOff Register) {
			VMOVUPS_Z(Mem{Base: dp, Index: outOff, Scale: 1}, kst, d)
		},
		tap: func(ky, kx int, v VecVirtual, kst Register) {
			VFMADD231PS(v, d, kst, acc[ky*3+kx])
		},
		end:       func(kst, outOff Register) {},
		nextImage: func() { addParamBytes("outStride", dp) },
	})
	storeTapSums(accp, acc)
	VZEROUPPER()
	RET()
}

// planeLanes holds the lane bookkeeping shared by the unpadded kernels
// (im2col and direct depthwise) of one h x wd plane: wv and owv broadcast
// wd and ow, xstart is each lane's input column in the first block of a
// row (iota - pl) and idx the stride-2 even-lane index (nil at stride 1).
type planeLanes struct {
	wv, owv, xstart, idx VecVirtual
}

func newPlaneLanes(s int) planeLanes {
	var l planeLanes
	l.wv = ZMM()
	VPBROADCASTD(paramAddr("wd"), l.wv)
	l.owv = ZMM()
	VPBROADCASTD(paramAddr("ow"), l.owv)
	l.xstart = ZMM()
	plv := ZMM()
	VPBROADCASTD(paramAddr("pl"), plv)
	VMOVDQU32(dwIota, l.xstart)
	VPSUBD(plv, l.xstart, l.xstart)
	l.idx = evenLanes(s)
	return l
}

// rowStart begins an output row: off is the byte offset of the first
// input value of the first block (-4*pl), xv the input column and oxv the
// output column of each lane.
func (l planeLanes) rowStart() (off Register, xv, oxv VecVirtual) {
	off = loadBytes("pl")
	NEGQ(off)
	xv = ZMM()
	VMOVDQA32(l.xstart, xv)
	oxv = ZMM()
	VMOVDQU32(dwIota, oxv)
	return off, xv, oxv
}

// nextBlock moves the lane columns to the next block of 16 outputs: xv by
// 16*s input columns, oxv by 16 output columns.
func nextBlock(s int, xv, oxv VecVirtual) {
	if s == 1 {
		VPADDD_BCST(dwConst.Offset(c16), xv, xv)
	} else {
		VPADDD_BCST(dwConst.Offset(c32), xv, xv)
	}
	VPADDD_BCST(dwConst.Offset(c16), oxv, oxv)
}

// paramAddr returns the frame address of a scalar or pointer parameter of
// the current function.
func paramAddr(name string) Mem {
	b, err := Param(name).Resolve()
	if err != nil {
		panic(err)
	}
	return b.Addr
}
