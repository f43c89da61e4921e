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
	leaf(name, "func(dst, src *float32, ldb, kc int)",
		fmt.Sprintf("%s copies kc rows of %d values (row stride ldb) into a packed panel.", name, nr))
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	ldb := loadBytes("ldb")
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
	leaf(name, "func(dst, src *float32, ldb, nr, groups, blocks int)",
		name+" packs 8*groups columns and 8*blocks rows of a transposed B panel.")
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	ldb := loadBytes("ldb")
	ldb3 := times3(ldb)
	nr4 := loadBytes("nr")
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
		VMOVUPS(rowOf(Mem{Base: base}, i, ldb, ldb3), r[i])
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

// packGather emits a B-panel packer for 32 columns at arbitrary offsets
// (a batch whose items are narrower than the panel): dst[p*32 + j] =
// src[p*ldb + offs[j]] for p < kc (AVX-512 gathers).
func packGather() {
	name := "packGather32AVX512"
	leaf(name, "func(dst, src *float32, offs *int32, ldb, kc int)",
		name+" packs kc rows of 32 columns found at offsets offs of each row.")
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	o0, o1 := loadOffsets()
	ldb := loadBytes("ldb")
	kc := Load(Param("kc"), GP64())
	Label(name + "_loop")
	v0, v1 := ZMM(), ZMM()
	KXNORW(K1, K1, K1)
	KXNORW(K2, K2, K2)
	VGATHERDPS(Mem{Base: src, Index: o0, Scale: 4}, K1, v0)
	VGATHERDPS(Mem{Base: src, Index: o1, Scale: 4}, K2, v1)
	VMOVUPS(v0, Mem{Base: dst})
	VMOVUPS(v1, Mem{Base: dst, Disp: 64})
	ADDQ(ldb, src)
	ADDQ(U32(128), dst)
	DECQ(kc)
	JNE(LabelRef(name + "_loop"))
	VZEROUPPER()
	RET()
}

// scatterTile emits the store of an 8x32 tile to columns at arbitrary
// offsets: c[i*ldc + offs[j]] = tile[i*32 + j] for i < rows and the
// columns j set in mask (AVX-512 scatters).
func scatterTile() {
	name := "scatterTile32AVX512"
	leaf(name, "func(c *float32, offs *int32, tile *float32, ldc, rows int, mask uint32)",
		name+" stores rows of a 32-column tile to columns found at offsets offs.")
	cp := Load(Param("c"), GP64())
	o0, o1 := loadOffsets()
	tp := Load(Param("tile"), GP64())
	ldc := loadBytes("ldc")
	rows := Load(Param("rows"), GP64())
	m := Load(Param("mask"), GP32())
	lo, hi := GP32(), GP32()
	MOVL(m, lo)
	ANDL(U32(0xffff), lo)
	MOVL(m, hi)
	SHRL(Imm(16), hi)
	Label(name + "_loop")
	v0, v1 := ZMM(), ZMM()
	VMOVUPS(Mem{Base: tp}, v0)
	VMOVUPS(Mem{Base: tp, Disp: 64}, v1)
	KMOVW(lo, K1)
	KMOVW(hi, K2)
	VSCATTERDPS(v0, K1, Mem{Base: cp, Index: o0, Scale: 4})
	VSCATTERDPS(v1, K2, Mem{Base: cp, Index: o1, Scale: 4})
	ADDQ(U32(128), tp)
	ADDQ(ldc, cp)
	DECQ(rows)
	JNE(LabelRef(name + "_loop"))
	VZEROUPPER()
	RET()
}

// segCopy emits copies between a 32-column panel or tile and 32/L batch
// items of L contiguous columns each (L = 4, 8 or 16), the items stride
// values apart:
//
//	pack (toPanel): dst[p*32 + s*L + x] = src[s*stride + p*ld + x]
//	store:          dst[s*stride + p*ld + x] = src[p*32 + s*L + x]
//
// for p < rows, s < 32/L, x < L (AVX-512 for L = 16, AVX otherwise).
func segCopy(toPanel bool) {
	name := "storeSeg32"
	if toPanel {
		name = "packSeg32"
	}
	doc := name + " stores rows of a 32-column tile into batch items of seglen columns."
	if toPanel {
		doc = name + " packs rows of a 32-column panel from batch items of seglen columns."
	}
	leaf(name, "func(dst, src *float32, stride, ld, rows, seglen int)", doc)
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	st := loadBytes("stride")
	st3 := times3(st)
	ld := loadBytes("ld")
	rows := Load(Param("rows"), GP64())
	seglen := Load(Param("seglen"), GP64())
	// The item side (strided) is addressed from b0 (items 0-3) and b4 = b0 +
	// 4*stride (items 4-7).
	item := func(b0, b4 Register, s int) Mem {
		base := b0
		if s >= 4 {
			base = b4
		}
		return rowOf(Mem{Base: base}, s, st, st3)
	}
	for _, L := range []int{4, 8, 16} {
		segs := 32 / L
		lbl := fmt.Sprintf("%s_L%d", name, L)
		CMPQ(seglen, Imm(uint64(L)))
		JNE(LabelRef(lbl + "_skip"))
		b4 := GP64()
		itemPtr := src
		panelPtr := dst
		if !toPanel {
			itemPtr, panelPtr = dst, src
		}
		Label(lbl + "_loop")
		LEAQ(Mem{Base: itemPtr, Index: st, Scale: 4}, b4)
		for s := 0; s < segs; s++ {
			pm := Mem{Base: panelPtr, Disp: 4 * s * L}
			im := item(itemPtr, b4, s)
			var v Register
			switch L {
			case 4:
				v = XMM()
			case 8:
				v = YMM()
			default:
				v = ZMM()
			}
			if toPanel {
				VMOVUPS(im, v)
				VMOVUPS(v, pm)
			} else {
				VMOVUPS(pm, v)
				VMOVUPS(v, im)
			}
		}
		ADDQ(ld, itemPtr)
		ADDQ(U32(128), panelPtr)
		DECQ(rows)
		JNE(LabelRef(lbl + "_loop"))
		VZEROUPPER()
		RET()
		Label(lbl + "_skip")
	}
	RET()
}
