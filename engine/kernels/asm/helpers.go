package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// leaf declares a NOSPLIT function with Go signature sig whose pointer
// arguments do not escape, documented by doc.
func leaf(name, sig, doc string) {
	TEXT(name, NOSPLIT, sig)
	Pragma("noescape")
	Doc(doc)
}

// loadBytes loads the integer parameter name, a count of float32 values,
// and returns it scaled to bytes (4*name) in a new register.
func loadBytes(name string) Register {
	r := Load(Param(name), GP64())
	SHLQ(Imm(2), r)
	return r
}

// times3 returns 3*ld in a new register.
func times3(ld Register) Register {
	r := GP64()
	LEAQ(Mem{Base: ld, Index: ld, Scale: 2}, r)
	return r
}

// rowOf returns m moved down i mod 4 rows of ld bytes: m + (i mod 4)*ld,
// with ld3 = 3*ld (only read when i mod 4 is 3).
func rowOf(m Mem, i int, ld, ld3 Register) Mem {
	switch i % 4 {
	case 1:
		m.Index, m.Scale = ld, 1
	case 2:
		m.Index, m.Scale = ld, 2
	case 3:
		m.Index, m.Scale = ld3, 1
	}
	return m
}

// addParamBytes adds 4*name (a count of float32 values held by an integer
// parameter) to dst.
func addParamBytes(name string, dst Op) {
	st := GP64()
	MOVQ(paramAddr(name), st)
	SHLQ(Imm(2), st)
	ADDQ(st, dst)
}

// lowLanes sets the mask register k to the low n lanes: k = 2^n - 1.
func lowLanes(n GPVirtual, k Register) {
	m := GP32()
	MOVL(U32(1), m)
	SHLXL(n.As32(), m, m)
	DECL(m)
	KMOVW(m, k)
}

// colBlocks splits a row of cols values into full blocks of 16 (their
// count, full) and a rest of rem values, and sets mask k to rem low lanes.
func colBlocks(cols, k Register) (full, rem GPVirtual) {
	rem = GP64()
	MOVQ(cols, rem)
	ANDQ(Imm(15), rem)
	lowLanes(rem, k)
	full = GP64()
	MOVQ(cols, full)
	SHRQ(Imm(4), full)
	return full, rem
}

// evenLanes loads evenIndex for stride 2 and returns its register; for
// stride 1 it emits nothing and returns nil.
func evenLanes(s int) VecVirtual {
	if s != 2 {
		return nil
	}
	idx := ZMM()
	VMOVUPS(evenIndex, idx)
	return idx
}

// nineTaps returns one new zmm vector per tap of a 3x3 filter, vector i
// filled by load from base + step*i bytes.
func nineTaps(base Register, step int, load func(...Op)) [9]VecVirtual {
	var v [9]VecVirtual
	for i := range v {
		v[i] = ZMM()
		load(Mem{Base: base, Disp: step * i}, v[i])
	}
	return v
}

// broadcastTaps broadcasts the 9 weights of a 3x3 filter at wp, one per
// vector.
func broadcastTaps(wp Register) [9]VecVirtual { return nineTaps(wp, 4, VBROADCASTSS) }

// loadTapSums loads the 9 lane-wise partial sums (16 values each) of a
// 3x3 weight gradient from accp.
func loadTapSums(accp Register) [9]VecVirtual { return nineTaps(accp, 64, VMOVUPS) }

// storeTapSums stores the partial sums loadTapSums loaded back to accp.
func storeTapSums(accp Register, acc [9]VecVirtual) {
	for i := range acc {
		VMOVUPS(acc[i], Mem{Base: accp, Disp: 64 * i})
	}
}

// loadOffsets loads the 32 int32 column offsets at the parameter offs into
// two vectors.
func loadOffsets() (o0, o1 VecVirtual) {
	op := Load(Param("offs"), GP64())
	o0, o1 = ZMM(), ZMM()
	VMOVDQU32(Mem{Base: op}, o0)
	VMOVDQU32(Mem{Base: op, Disp: 64}, o1)
	return o0, o1
}

// clampBounds broadcasts the float32 parameters lo and hi.
func clampBounds() (vlo, vhi VecVirtual) {
	vlo, vhi = ZMM(), ZMM()
	VBROADCASTSS(paramAddr("lo"), vlo)
	VBROADCASTSS(paramAddr("hi"), vhi)
	return vlo, vhi
}
