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
	TEXT(name, NOSPLIT, "func(out, in, wv *float32, idx *int32, n, groups, inStep, outStep int, masks uint64, lo, hi float32)")
	Pragma("noescape")
	Doc(name + " computes a 3x3 depthwise convolution of planes of at most 16 values.")
	outp := Load(Param("out"), GP64())
	inp := Load(Param("in"), GP64())
	idxp := Load(Param("idx"), GP64())
	var idx [9]VecVirtual
	for k := range idx {
		idx[k] = ZMM()
		VMOVDQU32(Mem{Base: idxp, Disp: 64 * k}, idx[k])
	}
	zero := ZMM()
	VPXORD(zero, zero, zero)
	vlo, vhi := ZMM(), ZMM()
	VBROADCASTSS(paramAddr("lo"), vlo)
	VBROADCASTSS(paramAddr("hi"), vhi)
	m := GP64()
	Load(Param("masks"), m)
	KMOVW(m.As32(), K1) // load mask, full group
	SHRQ(Imm(16), m)
	KMOVW(m.As32(), K2) // load mask, last group
	SHRQ(Imm(16), m)
	KMOVW(m.As32(), K3) // store mask, full group
	SHRQ(Imm(16), m)
	KMOVW(m.As32(), K4) // store mask, last group
	inStep := Load(Param("inStep"), GP64())
	SHLQ(Imm(2), inStep)
	outStep := Load(Param("outStep"), GP64())
	SHLQ(Imm(2), outStep)
	n := Load(Param("n"), GP64())

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
		t := ZMM()
		VMOVAPS(x, t)
		VPERMT2PS(zero, idx[k], t)
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
	// The last group holds fewer planes: advance by its true size.
	lastIn := Load(Param("masks"), GP64())
	// popcount of the last load / store masks gives the element counts.
	li := GP64()
	MOVQ(lastIn, li)
	SHRQ(Imm(16), li)
	ANDQ(U32(0xffff), li)
	POPCNTQ(li, li)
	LEAQ(Mem{Base: inp, Index: li, Scale: 4}, inp)
	SHRQ(Imm(48), lastIn)
	POPCNTQ(lastIn, lastIn)
	LEAQ(Mem{Base: outp, Index: lastIn, Scale: 4}, outp)
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
	TEXT(name, NOSPLIT, "func(acc, in, dout *float32, idx *int32, n, groups, inStep, outStep int, masks uint64)")
	Pragma("noescape")
	Doc(name + " accumulates the 3x3 depthwise weight gradient of planes of at most 16 values.")
	outp := Load(Param("dout"), GP64())
	inp := Load(Param("in"), GP64())
	idxp := Load(Param("idx"), GP64())
	var idx [9]VecVirtual
	for k := range idx {
		idx[k] = ZMM()
		VMOVDQU32(Mem{Base: idxp, Disp: 64 * k}, idx[k])
	}
	zero := ZMM()
	VPXORD(zero, zero, zero)
	m := GP64()
	Load(Param("masks"), m)
	KMOVW(m.As32(), K1)
	SHRQ(Imm(16), m)
	KMOVW(m.As32(), K2)
	SHRQ(Imm(16), m)
	KMOVW(m.As32(), K3)
	SHRQ(Imm(16), m)
	KMOVW(m.As32(), K4)
	inStep := Load(Param("inStep"), GP64())
	SHLQ(Imm(2), inStep)
	outStep := Load(Param("outStep"), GP64())
	SHLQ(Imm(2), outStep)
	n := Load(Param("n"), GP64())

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
	li := GP64()
	Load(Param("masks"), li)
	lo := GP64()
	MOVQ(li, lo)
	SHRQ(Imm(16), lo)
	ANDQ(U32(0xffff), lo)
	POPCNTQ(lo, lo)
	LEAQ(Mem{Base: inp, Index: lo, Scale: 4}, inp)
	SHRQ(Imm(48), li)
	POPCNTQ(li, li)
	LEAQ(Mem{Base: outp, Index: li, Scale: 4}, outp)
	Label(name + "_taps")
	for k := 0; k < 9; k++ {
		t := ZMM()
		VMOVAPS(x, t)
		VPERMT2PS(zero, idx[k], t)
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
