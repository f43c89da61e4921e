package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// dwTinyCN emits dwTiny for activations stored channel-major across the
// batch (CNHW): the planes of one channel's images are consecutive, so
// each zmm holds the planes of several images of one channel, and the
// channel's bias and 9 tap weights are broadcast from memory (w: 9 per
// channel, bias: 1 per channel). For each of nch channels, full vectors of
// planes use the masks of a full group (K1 load, K3 store) and, when the
// last-group masks are not empty, one more vector uses K2 and K4. Every
// lane is computed with the operations of dwTiny in the same order (bias,
// FMA of tap 0; products of taps 1 and 2; FMAs of the others into three
// accumulators; their sum; clamp), so results are bit-identical to it.
func dwTinyCN() {
	name := "dwTinyCNAVX512"
	leaf(name, "func(out, in, w, bias *float32, idx *int32, nch, full, inStep, outStep int, masks uint64, lo, hi float32)",
		name+" computes a 3x3 depthwise convolution of channel-major planes of at most 16 values.")
	outp := Load(Param("out"), GP64())
	inp := Load(Param("in"), GP64())
	wp := Load(Param("w"), GP64())
	bp := Load(Param("bias"), GP64())
	idx, zero := tinyWindows()
	vlo, vhi := clampBounds()
	m := GP64()
	Load(Param("masks"), m)
	for _, k := range []Op{K1, K2, K3, K4} {
		KMOVW(m.As32(), k) // load and store masks of a full and the last vector
		SHRQ(Imm(16), m)
	}
	inStep, outStep := loadBytes("inStep"), loadBytes("outStep")
	nch := Load(Param("nch"), GP64())
	lastIn, lastOut := GP64(), GP64()
	Load(Param("masks"), lastIn)
	MOVQ(lastIn, lastOut)
	SHRQ(Imm(16), lastIn)
	ANDQ(U32(0xffff), lastIn)
	POPCNTQ(lastIn, lastIn) // values of the last load (0: no last vector)
	SHRQ(Imm(48), lastOut)
	POPCNTQ(lastOut, lastOut)

	Label(name + "_channel")
	vb := ZMM()
	VBROADCASTSS(Mem{Base: bp}, vb)
	// vector computes one vector of planes with the given masks
	vector := func(load, store Op) {
		x := ZMM()
		VMOVUPS_Z(Mem{Base: inp}, load, x)
		acc := tinyCNTaps(x, zero, idx, vb, wp)
		VMAXPS(acc, vlo, acc)
		VMINPS(acc, vhi, acc)
		VMOVUPS(acc, store, Mem{Base: outp})
	}
	f := Load(Param("full"), GP64())
	Label(name + "_vector")
	TESTQ(f, f)
	JE(LabelRef(name + "_last"))
	vector(K1, K3)
	ADDQ(inStep, inp)
	ADDQ(outStep, outp)
	DECQ(f)
	JMP(LabelRef(name + "_vector"))

	Label(name + "_last")
	TESTQ(lastIn, lastIn)
	JE(LabelRef(name + "_next"))
	vector(K2, K4)
	LEAQ(Mem{Base: inp, Index: lastIn, Scale: 4}, inp)
	LEAQ(Mem{Base: outp, Index: lastOut, Scale: 4}, outp)

	Label(name + "_next")
	ADDQ(U32(36), wp)
	ADDQ(U32(4), bp)
	DECQ(nch)
	JNE(LabelRef(name + "_channel"))
	VZEROUPPER()
	RET()
}

// tinyCNTaps returns bias + the 9 taps of window x weighted by the
// broadcast weights at wp, in dwTiny's order of operations.
func tinyCNTaps(x, zero VecVirtual, idx [9]VecVirtual, vb VecVirtual, wp Register) VecVirtual {
	acc := [3]VecVirtual{ZMM(), ZMM(), ZMM()}
	VMOVAPS(vb, acc[0])
	for k := 0; k < 9; k++ {
		t := tinyTap(x, zero, idx[k])
		a := acc[k%3]
		if k == 1 || k == 2 {
			VMULPS_BCST(Mem{Base: wp, Disp: 4 * k}, t, a)
		} else {
			VFMADD231PS_BCST(Mem{Base: wp, Disp: 4 * k}, t, a)
		}
	}
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[2], acc[0], acc[0])
	return acc[0]
}
