package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// dwTiny emits a 3x3 depthwise convolution for planes of at most 16
// values: each zmm holds the planes of several consecutive channels, and
// every tap is a lane permutation (VPERMT2PS, index 16 selecting zero) of
// that window. For each image (n) and channel group (groups per image):
// out[j] = clamp(wv[0][j] + sum_k wv[1+k][j] * in[idx[k][j]]), with wv the
// group's 10 vectors (bias, then the 9 taps per output lane).
func dwTiny() {
	name := "dwTinyAVX512"
	leaf(name, "func(out, in, wv *float32, idx *int32, n, groups, inStep, outStep int, masks uint64, lo, hi float32)",
		name+" computes a 3x3 depthwise convolution of planes of at most 16 values.")
	outp := Load(Param("out"), GP64())
	inp := Load(Param("in"), GP64())
	idx, zero := tinyWindows()
	vlo, vhi := clampBounds()
	inStep, outStep, n := tinyMasks()

	Label(name + "_image")
	wv := Load(Param("wv"), GP64())
	g := Load(Param("groups"), GP64())
	Label(name + "_group")
	x := ZMM()
	CMPQ(g, Imm(1))
	JE(LabelRef(name + "_lastload"))
	VMOVUPS_Z(Mem{Base: inp}, K1, x)
	JMP(LabelRef(name + "_taps"))
	Label(name + "_lastload")
	VMOVUPS_Z(Mem{Base: inp}, K2, x)
	Label(name + "_taps")
	acc := [3]VecVirtual{ZMM(), ZMM(), ZMM()}
	VMOVUPS(Mem{Base: wv}, acc[0])
	for k := 0; k < 9; k++ {
		t := tinyTap(x, zero, idx[k])
		a := acc[k%3]
		if k == 1 || k == 2 {
			VMULPS(Mem{Base: wv, Disp: 64 * (k + 1)}, t, a)
		} else {
			VFMADD231PS(Mem{Base: wv, Disp: 64 * (k + 1)}, t, a)
		}
	}
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[2], acc[0], acc[0])
	VMAXPS(acc[0], vlo, acc[0])
	VMINPS(acc[0], vhi, acc[0])
	CMPQ(g, Imm(1))
	JE(LabelRef(name + "_laststore"))
	VMOVUPS(acc[0], K3, Mem{Base: outp})
	ADDQ(inStep, inp)
	ADDQ(outStep, outp)
	ADDQ(U32(640), wv)
	DECQ(g)
	JMP(LabelRef(name + "_group"))
	Label(name + "_laststore")
	VMOVUPS(acc[0], K4, Mem{Base: outp})
	skipLastGroup(inp, outp)
	DECQ(n)
	JNE(LabelRef(name + "_image"))
	VZEROUPPER()
	RET()
}

// dwTinyGrad emits the weight-gradient partial sums of dwTiny: for each
// image and channel group g, acc[g][k][j] += in[idx[k][j]] * dout[j] with
// the same window layout as dwTiny (the caller reduces the lanes of each
// channel).
func dwTinyGrad() {
	name := "dwTinyGradAVX512"
	leaf(name, "func(acc, in, dout *float32, idx *int32, n, groups, inStep, outStep int, masks uint64)",
		name+" accumulates the 3x3 depthwise weight gradient of planes of at most 16 values.")
	outp := Load(Param("dout"), GP64())
	inp := Load(Param("in"), GP64())
	idx, zero := tinyWindows()
	inStep, outStep, n := tinyMasks()

	Label(name + "_image")
	ap := Load(Param("acc"), GP64())
	g := Load(Param("groups"), GP64())
	Label(name + "_group")
	x, d := ZMM(), ZMM()
	CMPQ(g, Imm(1))
	JE(LabelRef(name + "_lastload"))
	VMOVUPS_Z(Mem{Base: inp}, K1, x)
	VMOVUPS_Z(Mem{Base: outp}, K3, d)
	ADDQ(inStep, inp)
	ADDQ(outStep, outp)
	JMP(LabelRef(name + "_taps"))
	Label(name + "_lastload")
	VMOVUPS_Z(Mem{Base: inp}, K2, x)
	VMOVUPS_Z(Mem{Base: outp}, K4, d)
	skipLastGroup(inp, outp)
	Label(name + "_taps")
	for k := 0; k < 9; k++ {
		t := tinyTap(x, zero, idx[k])
		a := ZMM()
		VMOVUPS(Mem{Base: ap, Disp: 64 * k}, a)
		VFMADD231PS(d, t, a)
		VMOVUPS(a, Mem{Base: ap, Disp: 64 * k})
	}
	ADDQ(U32(9*64), ap)
	DECQ(g)
	JNE(LabelRef(name + "_group"))
	DECQ(n)
	JNE(LabelRef(name + "_image"))
	VZEROUPPER()
	RET()
}

// tinyWindows loads the 9 tap permutations of the tiny kernels (the
// parameter idx, 16 int32 lane indexes each, 16 selecting zero) and a zero
// vector for the lanes they select from it.
func tinyWindows() (idx [9]VecVirtual, zero VecVirtual) {
	idx = nineTaps(Load(Param("idx"), GP64()), 64, VMOVDQU32)
	zero = ZMM()
	VPXORD(zero, zero, zero)
	return idx, zero
}

// tinyMasks unpacks the four 16-bit masks of the parameter masks into K1
// (load, full group), K2 (load, last group), K3 (store, full group) and K4
// (store, last group), and loads the group steps inStep and outStep (in
// bytes) and the image count n.
func tinyMasks() (inStep, outStep, n Register) {
	m := GP64()
	Load(Param("masks"), m)
	KMOVW(m.As32(), K1) // load mask, full group
	SHRQ(Imm(16), m)
	KMOVW(m.As32(), K2) // load mask, last group
	SHRQ(Imm(16), m)
	KMOVW(m.As32(), K3) // store mask, full group
	SHRQ(Imm(16), m)
	KMOVW(m.As32(), K4) // store mask, last group
	inStep = loadBytes("inStep")
	outStep = loadBytes("outStep")
	n = Load(Param("n"), GP64())
	return inStep, outStep, n
}

// tinyTap returns the window x permuted by one tap's lane indexes.
func tinyTap(x, zero, idx VecVirtual) VecVirtual {
	t := ZMM()
	VMOVAPS(x, t)
	VPERMT2PS(zero, idx, t)
	return t
}

// skipLastGroup advances inp and outp past the last channel group, which
// holds fewer planes than a full one: by the popcounts of the last load
// and store masks (bits 16-31 and 48-63 of the parameter masks).
func skipLastGroup(inp, outp Register) {
	li := Load(Param("masks"), GP64())
	lo := GP64()
	MOVQ(li, lo)
	SHRQ(Imm(16), lo)
	ANDQ(U32(0xffff), lo)
	POPCNTQ(lo, lo)
	LEAQ(Mem{Base: inp, Index: lo, Scale: 4}, inp)
	SHRQ(Imm(48), li)
	POPCNTQ(li, li)
	LEAQ(Mem{Base: outp, Index: li, Scale: 4}, outp)
}
