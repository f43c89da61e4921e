package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// dwPairForward emits the stride-2 3x3 depthwise convolution of planes
// whose output rows have at most 8 values, two output rows per vector:
// lanes 0-7 hold columns of output row oy and lanes 8-15 of row oy+1, each
// tap the even lanes of 16 values loaded from the two input rows (one
// VPERMT2PS), so that twice as many lanes carry outputs as in the row
// kernel. Output (y, x) is bias + sum w[ky*3+kx] * in[(2y-pt+ky)*wd +
// 2x-pl+kx] over the taps inside the h x wd plane: the loads of tap kx
// keep the lanes set in the kx-th 16 bits of masks (the columns inside
// the plane), rows outside it read zero (at least wd values). count planes
// inStride and outStride values apart; with clip the outputs are clamped
// as dwDirectForward's. The two rows are stored compressed (ow values
// each), the second only when it exists.
func dwPairForward(name string, clip bool) {
	outp, inp, w, bias, clamp := dwPrologue(name, clip,
		"func(out, in, zero, w *float32, bias float32, h, wd, oh, ow, pt, pl, masks, count, inStride, outStride int)",
		"computes a 3x3 stride-2 depthwise convolution of planes, two output rows per vector")
	idx := evenLanes(2)
	wd4 := loadBytes("wd")
	ow := GP64()
	Load(Param("ow"), ow)
	// K2-K4: column masks of the three taps of a row
	m := GP64()
	Load(Param("masks"), m)
	kcol := [3]Register{K2, K3, K4}
	for kx := 0; kx < 3; kx++ {
		KMOVW(m.As32(), kcol[kx])
		if kx < 2 {
			SHRQ(Imm(16), m)
		}
	}
	// K5: the output lanes (ow of each half); K6: 2*ow lanes; K7: ow lanes
	t := GP64()
	lane := GP32()
	MOVL(U32(1), lane)
	SHLXL(ow.As32(), lane, lane)
	DECL(lane) // 2^ow - 1
	KMOVW(lane, K7)
	MOVL(lane, t.As32())
	SHLL(Imm(8), t.As32())
	ORL(lane, t.As32())
	KMOVW(t.As32(), K5)
	MOVL(lane, t.As32())
	SHLXL(ow.As32(), lane, lane)
	ORL(t.As32(), lane) // 2^(2ow) - 1
	KMOVW(lane, K6)
	owb := GP64()
	MOVQ(ow, owb)
	SHLQ(Imm(3), owb) // bytes of two output rows

	acc := [3]VecVirtual{ZMM(), ZMM(), ZMM()}
	a, b := ZMM(), ZMM()
	Label(name + "_image")
	o := GP64()
	MOVQ(outp, o)
	iy := Load(Param("pt"), GP64())
	NEGQ(iy)
	oy := GP64()
	XORQ(oy, oy)
	Label(name + "_pair")
	// rows[ky][r]: input row iy+ky (r = 0) and iy+ky+2 (r = 1), or the
	// zero row outside the plane; the second output row of a last odd row
	// reads whatever its input rows are and is not stored
	var rows [3][2]GPVirtual
	for ky := 0; ky < 3; ky++ {
		for r := 0; r < 2; r++ {
			p := GP64()
			y := GP64()
			MOVQ(iy, y)
			if d := ky + 2*r; d > 0 {
				ADDQ(Imm(uint64(d)), y)
			}
			MOVQ(y, p)
			IMULQ(wd4, p)
			ADDQ(inp, p)
			CMPQ(y, paramAddr("h"))
			CMOVQCC(paramAddr("zero"), p)
			rows[ky][r] = p
		}
	}
	pl4 := loadBytes("pl")
	NEGQ(pl4)
	for ky := 0; ky < 3; ky++ {
		for kx := 0; kx < 3; kx++ {
			VMOVUPS_Z(Mem{Base: rows[ky][0], Index: pl4, Scale: 1, Disp: 4 * kx}, kcol[kx], a)
			VMOVUPS_Z(Mem{Base: rows[ky][1], Index: pl4, Scale: 1, Disp: 4 * kx}, kcol[kx], b)
			VPERMT2PS(b, idx, a)
			tapFMA(ky, kx, a, w, bias, acc)
		}
	}
	sumRows(acc, clamp)
	VCOMPRESSPS_Z(acc[0], K5, acc[0])
	// two rows, or one when oy+1 is past the last
	last := GP64()
	MOVQ(oy, last)
	INCQ(last)
	CMPQ(last, paramAddr("oh"))
	JGE(LabelRef(name + "_one"))
	VMOVUPS(acc[0], K6, Mem{Base: o})
	JMP(LabelRef(name + "_next"))
	Label(name + "_one")
	VMOVUPS(acc[0], K7, Mem{Base: o})
	Label(name + "_next")
	ADDQ(owb, o)
	ADDQ(Imm(4), iy)
	ADDQ(Imm(2), oy)
	CMPQ(oy, paramAddr("oh"))
	JL(LabelRef(name + "_pair"))
	nextPlaneOrReturn(name, inp, outp)
}
