package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// im2colTap emits one row of an im2col matrix for stride s (1 or 2):
// out[y*ow + x] = in[(s*y - pt)*wd + s*x - pl], or 0 where that falls
// outside the h x wd plane (pt and pl may be negative: they include the
// kernel tap offset). zero must point to at least wd zero values.
func im2colTap(s int) {
	name := fmt.Sprintf("im2colS%dAVX512", s)
	leaf(name, "func(out, in, zero *float32, h, wd, oh, ow, pt, pl int)",
		fmt.Sprintf("%s writes one im2col row of a stride-%d convolution.", name, s))
	outp := Load(Param("out"), GP64())
	l := newPlaneLanes(s)
	wd4 := loadBytes("wd")
	iy := Load(Param("pt"), GP64())
	NEGQ(iy)
	oh := Load(Param("oh"), GP64())

	Label(name + "_row")
	r := GP64()
	MOVQ(iy, r)
	IMULQ(wd4, r)
	ADDQ(paramAddr("in"), r)
	CMPQ(iy, paramAddr("h"))
	CMOVQCC(paramAddr("zero"), r)
	off, xv, oxv := l.rowStart()
	x := Load(Param("ow"), GP64())

	Label(name + "_col")
	VPCMPUD(Imm(1), l.owv, oxv, K1)
	VPCMPUD(Imm(1), l.wv, xv, K2)
	v := ZMM()
	m := Mem{Base: r, Index: off, Scale: 1}
	VMOVUPS_Z(m, K2, v)
	if s == 2 {
		t := ZMM()
		VPADDD_BCST(dwConst.Offset(c16), xv, t)
		VPCMPUD(Imm(1), l.wv, t, K3)
		hi := ZMM()
		VMOVUPS_Z(m.Offset(64), K3, hi)
		VPERMT2PS(hi, l.idx, v)
	}
	VMOVUPS(v, K1, Mem{Base: outp})
	ADDQ(U32(64), outp)
	ADDQ(U32(64*s), off)
	nextBlock(s, xv, oxv)
	SUBQ(Imm(16), x)
	JG(LabelRef(name + "_col"))
	// The last block wrote fewer than 16 values: rewind by the excess.
	LEAQ(Mem{Base: outp, Index: x, Scale: 4}, outp)
	ADDQ(Imm(uint64(s)), iy)
	DECQ(oh)
	JNE(LabelRef(name + "_row"))
	VZEROUPPER()
	RET()
}
