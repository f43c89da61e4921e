package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// biasActTile emits the fused GEMM epilogue over a rows x cols tile of C:
// c = min(max(c + rowBias[i] + colBias[j], lo), hi), where rowBias is used
// when flags&1 and colBias when flags&2 (AVX-512, masked tail).
func biasActTile() {
	name := "biasActTileAVX512"
	leaf(name, "func(c *float32, ldc, rows, cols int, rowBias, colBias *float32, flags int, lo, hi float32)",
		name+" adds row and column biases to a tile of C and clamps it to [lo, hi].")
	cp := Load(Param("c"), GP64())
	ldc := loadBytes("ldc")
	rows := Load(Param("rows"), GP64())
	cols := Load(Param("cols"), GP64())
	rb := Load(Param("rowBias"), GP64())
	flags := Load(Param("flags"), GP64())
	vlo, vhi := clampBounds()
	full, rem := colBlocks(cols, K1)

	vrb := ZMM()
	Label(name + "_row")
	VPXORD(vrb, vrb, vrb)
	TESTQ(U32(1), flags)
	JE(LabelRef(name + "_norb"))
	VBROADCASTSS(Mem{Base: rb}, vrb)
	ADDQ(Imm(4), rb)
	Label(name + "_norb")
	cb := Load(Param("colBias"), GP64())
	p := GP64()
	MOVQ(cp, p)
	j := GP64()
	MOVQ(full, j)
	v := ZMM()
	body := func(masked bool, withCol bool) {
		if masked {
			VMOVUPS_Z(Mem{Base: p}, K1, v)
		} else {
			VMOVUPS(Mem{Base: p}, v)
		}
		VADDPS(vrb, v, v)
		if withCol {
			if masked {
				t := ZMM()
				VMOVUPS_Z(Mem{Base: cb}, K1, t)
				VADDPS(t, v, v)
			} else {
				VADDPS(Mem{Base: cb}, v, v)
			}
		}
		VMAXPS(v, vlo, v)
		VMINPS(v, vhi, v)
		if masked {
			VMOVUPS(v, K1, Mem{Base: p})
		} else {
			VMOVUPS(v, Mem{Base: p})
		}
	}
	// row emits the full blocks of a row, then its masked tail.
	row := func(loop, tail string, withCol bool) {
		Label(name + loop)
		TESTQ(j, j)
		JE(LabelRef(name + tail))
		body(false, withCol)
		ADDQ(U32(64), p)
		if withCol {
			ADDQ(U32(64), cb)
		}
		DECQ(j)
		JMP(LabelRef(name + loop))
		Label(name + tail)
		TESTQ(rem, rem)
		JE(LabelRef(name + "_next"))
		body(true, withCol)
	}
	TESTQ(U32(2), flags)
	JE(LabelRef(name + "_nocb"))
	row("_cbloop", "_cbtail", true)
	JMP(LabelRef(name + "_next"))

	Label(name + "_nocb")
	row("_loop", "_tail", false)

	Label(name + "_next")
	ADDQ(ldc, cp)
	DECQ(rows)
	JNE(LabelRef(name + "_row"))
	VZEROUPPER()
	RET()
}
