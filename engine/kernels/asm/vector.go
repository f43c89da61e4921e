package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// dotKernel emits sum x[i]*y[i] over n values with AVX2 and FMA.
func dotKernel() {
	leaf("dotAVX2", "func(x, y *float32, n int) float32", "dotAVX2 returns the dot product of the n values at x and y.")
	x := Load(Param("x"), GP64())
	y := Load(Param("y"), GP64())
	n := Load(Param("n"), GP64())
	var acc [4]VecVirtual
	for i := range acc {
		acc[i] = YMM()
		VXORPS(acc[i], acc[i], acc[i])
	}
	pairLoop("dot", "dot_reduce", x, y, n, func(i int) {
		v := YMM()
		VMOVUPS(Mem{Base: x, Disp: 32 * i}, v)
		VFMADD231PS(Mem{Base: y, Disp: 32 * i}, v, acc[i])
	})
	Label("dot_reduce")
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	hi := XMM()
	VEXTRACTF128(Imm(1), acc[0], hi)
	lo := acc[0].AsX()
	VADDPS(hi, lo, lo)
	VMOVHLPS(lo, hi, hi)
	VADDPS(hi, lo, lo)
	VMOVSHDUP(lo, hi)
	VADDSS(hi, lo, lo)
	pairTail("dot", x, y, n, func() {
		t := XMM()
		VMOVSS(Mem{Base: x}, t)
		VFMADD231SS(Mem{Base: y}, t, lo)
	})
	VZEROUPPER()
	Store(lo, ReturnIndex(0))
	RET()
}

// axpyKernel emits y[i] += alpha*x[i] over n values with AVX2 and FMA.
func axpyKernel() {
	leaf("axpyAVX2", "func(alpha float32, x, y *float32, n int)", "axpyAVX2 adds alpha times the n values at x to the n values at y.")
	a := YMM()
	VBROADCASTSS(NewParamAddr("alpha", 0), a)
	x := Load(Param("x"), GP64())
	y := Load(Param("y"), GP64())
	n := Load(Param("n"), GP64())
	pairLoop("axpy", "axpy_tail", x, y, n, func(i int) {
		v := YMM()
		VMOVUPS(Mem{Base: y, Disp: 32 * i}, v)
		VFMADD231PS(Mem{Base: x, Disp: 32 * i}, a, v)
		VMOVUPS(v, Mem{Base: y, Disp: 32 * i})
	})
	pairTail("axpy", x, y, n, func() {
		t := XMM()
		VMOVSS(Mem{Base: y}, t)
		VFMADD231SS(Mem{Base: x}, a.AsX(), t)
		VMOVSS(t, Mem{Base: y})
	})
	VZEROUPPER()
	RET()
}

// stride2Kernel emits dst[i] = src[2*i] for i < n (AVX-512: two loads and
// an even-lane permutation per 16 values, masked tail).
func stride2Kernel() {
	name := "gatherStride2AVX512"
	leaf(name, "func(dst, src *float32, n int)", name+" copies every second value of src into dst.")
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	n := GP64()
	Load(Param("n"), n)
	idx := evenLanes(2)
	Label(name + "_loop")
	CMPQ(n, Imm(16))
	JL(LabelRef(name + "_tail"))
	v := ZMM()
	VMOVUPS(Mem{Base: src}, v)
	VPERMT2PS(Mem{Base: src, Disp: 64}, idx, v)
	VMOVUPS(v, Mem{Base: dst})
	ADDQ(U32(128), src)
	ADDQ(U32(64), dst)
	SUBQ(Imm(16), n)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_tail")
	TESTQ(n, n)
	JE(LabelRef(name + "_done"))
	// masks: n lanes of dst; 2n-1 values of src in two halves
	lowLanes(n, K1)
	cnt := GP64()
	LEAQ(Mem{Base: n, Index: n, Scale: 1, Disp: -1}, cnt) // 2n-1 source values
	lo := GP64()
	MOVQ(cnt, lo)
	CMPQ(lo, Imm(16))
	JLE(LabelRef(name + "_lomask"))
	MOVQ(U32(16), lo)
	Label(name + "_lomask")
	lowLanes(lo, K2)
	SUBQ(lo, cnt) // values in the upper half
	lowLanes(cnt, K3)
	a, b := ZMM(), ZMM()
	VMOVUPS_Z(Mem{Base: src}, K2, a)
	VMOVUPS_Z(Mem{Base: src, Disp: 64}, K3, b)
	VPERMT2PS(b, idx, a)
	VMOVUPS(a, K1, Mem{Base: dst})
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// pairLoop emits the vector loops of a two-operand kernel over n float32
// values at x and y: blocks of 32 values (body called for the 4 vectors
// i = 0..3, at byte offset 32*i), then blocks of 8 (body(0)), jumping to
// exit when fewer than 8 values are left. Labels start with prefix.
func pairLoop(prefix, exit string, x, y, n Register, body func(i int)) {
	for _, blk := range []struct {
		label, next string
		vectors     int
	}{{prefix + "_loop32", prefix + "_loop8", 4}, {prefix + "_loop8", exit, 1}} {
		Label(blk.label)
		CMPQ(n, Imm(uint64(8*blk.vectors)))
		JL(LabelRef(blk.next))
		for i := 0; i < blk.vectors; i++ {
			body(i)
		}
		ADDQ(U32(uint64(32*blk.vectors)), x)
		ADDQ(U32(uint64(32*blk.vectors)), y)
		SUBQ(Imm(uint64(8*blk.vectors)), n)
		JMP(LabelRef(blk.label))
	}
}

// pairTail emits the scalar loop over the last values of a two-operand
// kernel (body handles the value at x and y), ending at the label
// prefix_done.
func pairTail(prefix string, x, y, n Register, body func()) {
	Label(prefix + "_tail")
	TESTQ(n, n)
	JE(LabelRef(prefix + "_done"))
	body()
	ADDQ(Imm(4), x)
	ADDQ(Imm(4), y)
	DECQ(n)
	JMP(LabelRef(prefix + "_tail"))
	Label(prefix + "_done")
}
