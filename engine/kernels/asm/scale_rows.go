package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// scaleRows emits dst[i][j] = src[i][j]*d[i] + b[i] for rows of cols
// values (row strides ldd and lds), with a product and then a sum (no
// fused multiply-add), so that every value has the bits of the scalar
// expression v*d + b.
func scaleRows() {
	name := "scaleRowsAVX512"
	leaf(name, "func(dst *float32, ldd int, src *float32, lds, rows, cols int, d, b *float32)",
		name+" writes src[i][j]*d[i] + b[i] into dst[i][j].")
	dp := Load(Param("dst"), GP64())
	ldd := loadBytes("ldd")
	sp := Load(Param("src"), GP64())
	lds := loadBytes("lds")
	rows := Load(Param("rows"), GP64())
	cols := Load(Param("cols"), GP64())
	scale := Load(Param("d"), GP64())
	shift := Load(Param("b"), GP64())
	full, rem := colBlocks(cols, K1)

	Label(name + "_row")
	va, vb := ZMM(), ZMM()
	VBROADCASTSS(Mem{Base: scale}, va)
	VBROADCASTSS(Mem{Base: shift}, vb)
	p, q, j := GP64(), GP64(), GP64()
	MOVQ(dp, p)
	MOVQ(sp, q)
	MOVQ(full, j)
	v := ZMM()
	Label(name + "_block")
	TESTQ(j, j)
	JE(LabelRef(name + "_tail"))
	VMULPS(Mem{Base: q}, va, v)
	VADDPS(vb, v, v)
	VMOVUPS(v, Mem{Base: p})
	ADDQ(U32(64), p)
	ADDQ(U32(64), q)
	DECQ(j)
	JMP(LabelRef(name + "_block"))
	Label(name + "_tail")
	TESTQ(rem, rem)
	JE(LabelRef(name + "_next"))
	VMOVUPS_Z(Mem{Base: q}, K1, v)
	VMULPS(v, va, v)
	VADDPS(vb, v, v)
	VMOVUPS(v, K1, Mem{Base: p})
	Label(name + "_next")
	ADDQ(ldd, dp)
	ADDQ(lds, sp)
	ADDQ(Imm(4), scale)
	ADDQ(Imm(4), shift)
	DECQ(rows)
	JNE(LabelRef(name + "_row"))
	VZEROUPPER()
	RET()
}
