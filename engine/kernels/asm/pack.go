package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// packCopy emits a B-panel packer for nr columns of a row-major B:
// dst[p*nr + j] = src[p*ldb + j] for p < kc, j < nr (AVX).
func packCopy(nr int) {
	name := fmt.Sprintf("packCopy%dAVX", nr)
	TEXT(name, NOSPLIT, "func(dst, src *float32, ldb, kc int)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s copies kc rows of %d values (row stride ldb) into a packed panel.", name, nr))
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	ldb := Load(Param("ldb"), GP64())
	SHLQ(Imm(2), ldb)
	kc := Load(Param("kc"), GP64())
	nv := nr / 8
	v := make([]VecVirtual, nv)
	for i := range v {
		v[i] = YMM()
	}
	Label(name + "_loop")
	TESTQ(kc, kc)
	JE(LabelRef(name + "_done"))
	for i := 0; i < nv; i++ {
		VMOVUPS(Mem{Base: src, Disp: 32 * i}, v[i])
	}
	for i := 0; i < nv; i++ {
		VMOVUPS(v[i], Mem{Base: dst, Disp: 32 * i})
	}
	ADDQ(ldb, src)
	ADDQ(U32(4*nr), dst)
	DECQ(kc)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// packTrans emits a B-panel packer for a transposed B: dst[p*nr + j] =
// src[j*ldb + p] for j < 8*groups, p < 8*blocks, transposing 8x8 tiles (AVX).
func packTrans() {
	name := "packTrans8AVX"
	TEXT(name, NOSPLIT, "func(dst, src *float32, ldb, nr, groups, blocks int)")
	Pragma("noescape")
	Doc(name + " packs 8*groups columns and 8*blocks rows of a transposed B panel.")
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	ldb := Load(Param("ldb"), GP64())
	SHLQ(Imm(2), ldb)
	ldb3 := GP64()
	LEAQ(Mem{Base: ldb, Index: ldb, Scale: 2}, ldb3)
	nr4 := Load(Param("nr"), GP64())
	SHLQ(Imm(2), nr4)
	groups := Load(Param("groups"), GP64())

	Label(name + "_group")
	blocks := Load(Param("blocks"), GP64())
	s0 := GP64()
	MOVQ(src, s0)
	s4 := GP64()
	LEAQ(Mem{Base: src, Index: ldb, Scale: 4}, s4)
	d := GP64()
	MOVQ(dst, d)
	Label(name + "_block")
	var r [8]VecVirtual
	for i := range r {
		r[i] = YMM()
		base := s0
		if i >= 4 {
			base = s4
		}
		m := Mem{Base: base}
		switch i % 4 {
		case 1:
			m.Index, m.Scale = ldb, 1
		case 2:
			m.Index, m.Scale = ldb, 2
		case 3:
			m.Index, m.Scale = ldb3, 1
		}
		VMOVUPS(m, r[i])
	}
	var t [8]VecVirtual
	for i := 0; i < 4; i++ {
		t[2*i], t[2*i+1] = YMM(), YMM()
		VUNPCKLPS(r[2*i+1], r[2*i], t[2*i])
		VUNPCKHPS(r[2*i+1], r[2*i], t[2*i+1])
	}
	var s [8]VecVirtual
	for h := 0; h < 2; h++ { // rows 0-3, then 4-7
		a0, a1, b0, b1 := t[4*h], t[4*h+1], t[4*h+2], t[4*h+3]
		for i := range 4 {
			s[4*h+i] = YMM()
		}
		VSHUFPS(Imm(0x44), b0, a0, s[4*h])
		VSHUFPS(Imm(0xee), b0, a0, s[4*h+1])
		VSHUFPS(Imm(0x44), b1, a1, s[4*h+2])
		VSHUFPS(Imm(0xee), b1, a1, s[4*h+3])
	}
	out := GP64()
	MOVQ(d, out)
	for i := 0; i < 8; i++ {
		o := YMM()
		if i < 4 {
			VPERM2F128(Imm(0x20), s[4+i], s[i], o)
		} else {
			VPERM2F128(Imm(0x31), s[i], s[i-4], o)
		}
		VMOVUPS(o, Mem{Base: out})
		if i < 7 {
			ADDQ(nr4, out)
		}
	}
	ADDQ(U32(32), s0)
	ADDQ(U32(32), s4)
	LEAQ(Mem{Base: out, Index: nr4, Scale: 1}, d)
	DECQ(blocks)
	JNE(LabelRef(name + "_block"))
	// next group of 8 columns: src += 8 rows, dst += 8 values
	LEAQ(Mem{Base: src, Index: ldb, Scale: 8}, src)
	ADDQ(U32(32), dst)
	DECQ(groups)
	JNE(LabelRef(name + "_group"))
	VZEROUPPER()
	RET()
}
