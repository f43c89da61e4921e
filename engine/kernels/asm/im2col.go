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
	TEXT(name, NOSPLIT, "func(out, in, zero *float32, h, wd, oh, ow, pt, pl int)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s writes one im2col row of a stride-%d convolution.", name, s))
	outp := Load(Param("out"), GP64())
	wv := ZMM()
	VPBROADCASTD(paramAddr("wd"), wv)
	owv := ZMM()
	VPBROADCASTD(paramAddr("ow"), owv)
	// xstart: source index of each loaded lane of the first block.
	xstart := ZMM()
	plv := ZMM()
	VPBROADCASTD(paramAddr("pl"), plv)
	VMOVDQU32(dwIota, xstart)
	VPSUBD(plv, xstart, xstart)
	var idx VecVirtual
	if s == 2 {
		idx = ZMM()
		VMOVUPS(evenIndex, idx)
	}
	wd4 := Load(Param("wd"), GP64())
	SHLQ(Imm(2), wd4)
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
	off := Load(Param("pl"), GP64())
	SHLQ(Imm(2), off)
	NEGQ(off)
	xv := ZMM()
	VMOVDQA32(xstart, xv)
	oxv := ZMM()
	VMOVDQU32(dwIota, oxv)
	x := Load(Param("ow"), GP64())

	Label(name + "_col")
	VPCMPUD(Imm(1), owv, oxv, K1)
	VPCMPUD(Imm(1), wv, xv, K2)
	v := ZMM()
	m := Mem{Base: r, Index: off, Scale: 1}
	VMOVUPS_Z(m, K2, v)
	if s == 2 {
		t := ZMM()
		VPADDD_BCST(dwConst.Offset(c16), xv, t)
		VPCMPUD(Imm(1), wv, t, K3)
		hi := ZMM()
		VMOVUPS_Z(m.Offset(64), K3, hi)
		VPERMT2PS(hi, idx, v)
	}
	VMOVUPS(v, K1, Mem{Base: outp})
	ADDQ(U32(64), outp)
	ADDQ(U32(64*s), off)
	if s == 1 {
		VPADDD_BCST(dwConst.Offset(c16), xv, xv)
	} else {
		VPADDD_BCST(dwConst.Offset(c32), xv, xv)
	}
	VPADDD_BCST(dwConst.Offset(c16), oxv, oxv)
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
