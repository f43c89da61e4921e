package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// evenIndex and oddIndex are the VPERMT2PS indices that pick the even and
// the odd lanes of two concatenated zmm registers (stride-2 deinterleave).
var evenIndex, oddIndex Mem

func depthwiseData() {
	for odd, m := range []*Mem{&evenIndex, &oddIndex} {
		*m = GLOBL([]string{"dwEvenIndex", "dwOddIndex"}[odd], RODATA|NOPTR)
		for i := 0; i < 16; i++ {
			DATA(4*i, U32(uint32(2*i+odd)))
		}
	}
}

// tailMask sets k to the mask of the first (n mod 16) lanes, or all 16
// lanes when n is a multiple of 16, and returns the number of 16-lane
// blocks ceil(n/16) in a new register.
func tailMask(n Register, k Register) Register {
	blocks := GP64()
	MOVQ(n, blocks)
	ADDQ(Imm(15), blocks)
	SHRQ(Imm(4), blocks)
	rem := GP64()
	MOVQ(n, rem)
	ANDQ(Imm(15), rem)
	m := GP32()
	MOVL(U32(0xffff), m)
	full := fmt.Sprintf("mask_full_%d", labelSeq())
	TESTQ(rem, rem)
	JE(LabelRef(full))
	MOVL(U32(1), m)
	SHLXL(rem.As32(), m, m)
	DECL(m)
	Label(full)
	KMOVW(m, k)
	return blocks
}

var seq int

func labelSeq() int { seq++; return seq }

// loadTap loads the 16 input values p[s*x + kx] of one kernel tap, where
// base addresses p[s*x] (stride s = 1 or 2).
func loadTap(base Mem, kx, s int, idx, dst VecVirtual) {
	m := base.Offset(4 * kx)
	if s == 1 {
		VMOVUPS(m, dst)
		return
	}
	VMOVUPS(m, dst)
	VPERMT2PS(m.Offset(64), idx, dst)
}

// planeRows loads the output width and height of a padded-plane kernel
// (parameters ow and oh), sets k to the store mask of the last block of
// a row and returns ow, oh, k, the number of 16-lane blocks of a row and
// rowStep, the bytes between the first input rows of two output rows
// (s rows of ldp bytes).
func planeRows(ldp Register, s int) (ow, oh, k, blocks, rowStep Register) {
	ow = Load(Param("ow"), GP64())
	oh = Load(Param("oh"), GP64())
	k = K1
	blocks = tailMask(ow, k)
	rowStep = GP64()
	MOVQ(ldp, rowStep)
	if s == 2 {
		SHLQ(Imm(1), rowStep)
	}
	return ow, oh, k, blocks, rowStep
}

// dwForward emits a 3x3 depthwise convolution of one zero-padded plane:
// out[y*ow + x] = bias + sum w[ky*3+kx] * p[(s*y+ky)*ldp + s*x + kx] for
// y < oh, x < ow. p must be readable 16*s+2 values past s*ow on each row.
func dwForward(name string, s int) {
	leaf(name, "func(out, p *float32, ldp int, w *float32, bias float32, ow, oh int)",
		fmt.Sprintf("%s computes a 3x3 stride-%d depthwise convolution of a padded plane.", name, s))
	outp := Load(Param("out"), GP64())
	pp := Load(Param("p"), GP64())
	ldp := loadBytes("ldp")
	w := broadcastTaps(Load(Param("w"), GP64()))
	bias := ZMM()
	VBROADCASTSS(NewParamAddr("bias", 32), bias)
	idx := evenLanes(s)
	ow, oh, k, blocks, rowStep := planeRows(ldp, s)
	owBytes := GP64()
	MOVQ(ow, owBytes)
	SHLQ(Imm(2), owBytes)

	Label(name + "_row")
	x := GP64()
	XORQ(x, x)
	po := GP64()
	MOVQ(pp, po)
	oo := GP64()
	MOVQ(outp, oo)
	Label(name + "_col")
	acc := [3]VecVirtual{ZMM(), ZMM(), ZMM()}
	v := ZMM()
	for ky := 0; ky < 3; ky++ {
		base := rowOf(Mem{Base: po}, ky, ldp, nil)
		for kx := 0; kx < 3; kx++ {
			loadTap(base, kx, s, idx, v)
			if kx == 0 {
				if ky == 0 {
					VFMADD213PS(bias, w[0], v) // v = w0*v + bias
					VMOVAPS(v, acc[0])
				} else {
					VMULPS(v, w[ky*3], acc[ky])
				}
				continue
			}
			VFMADD231PS(v, w[ky*3+kx], acc[ky])
		}
	}
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[2], acc[0], acc[0])
	INCQ(x)
	CMPQ(x, blocks)
	JE(LabelRef(name + "_last"))
	VMOVUPS(acc[0], Mem{Base: oo})
	ADDQ(U32(64), oo)
	ADDQ(U32(64*s), po)
	JMP(LabelRef(name + "_col"))
	Label(name + "_last")
	VMOVUPS(acc[0], k, Mem{Base: oo})
	ADDQ(owBytes, outp)
	ADDQ(rowStep, pp)
	DECQ(oh)
	JNE(LabelRef(name + "_row"))
	VZEROUPPER()
	RET()
}

// dwWeightGrad emits the weight gradient of a 3x3 depthwise convolution of
// one zero-padded plane: lane-wise partial sums of
// dout[y*ow + x] * p[(s*y+ky)*ldp + s*x + kx] are added into
// acc[(ky*3+kx)*16 : +16] (the caller reduces the 16 lanes).
func dwWeightGrad(name string, s int) {
	leaf(name, "func(acc, p *float32, ldp int, dout *float32, ow, oh int)",
		fmt.Sprintf("%s accumulates the 3x3 stride-%d depthwise weight gradient of a padded plane.", name, s))
	accp := Load(Param("acc"), GP64())
	pp := Load(Param("p"), GP64())
	ldp := loadBytes("ldp")
	dp := Load(Param("dout"), GP64())
	acc := loadTapSums(accp)
	idx := evenLanes(s)
	ow, oh, k, blocks, rowStep := planeRows(ldp, s)

	Label(name + "_row")
	x := GP64()
	XORQ(x, x)
	po := GP64()
	MOVQ(pp, po)
	d := ZMM()
	v := ZMM()
	Label(name + "_col")
	INCQ(x)
	CMPQ(x, blocks)
	JE(LabelRef(name + "_lastload"))
	VMOVUPS(Mem{Base: dp}, d)
	JMP(LabelRef(name + "_taps"))
	Label(name + "_lastload")
	VMOVUPS_Z(Mem{Base: dp}, k, d)
	Label(name + "_taps")
	for ky := 0; ky < 3; ky++ {
		base := rowOf(Mem{Base: po}, ky, ldp, nil)
		for kx := 0; kx < 3; kx++ {
			loadTap(base, kx, s, idx, v)
			VFMADD231PS(v, d, acc[ky*3+kx])
		}
	}
	CMPQ(x, blocks)
	JE(LabelRef(name + "_nextrow"))
	ADDQ(U32(64), dp)
	ADDQ(U32(64*s), po)
	JMP(LabelRef(name + "_col"))
	Label(name + "_nextrow")
	// dout advances by the part of ow in the last block.
	rem := GP64()
	MOVQ(ow, rem)
	SUBQ(Imm(1), rem)
	ANDQ(Imm(15), rem)
	LEAQ(Mem{Base: dp, Index: rem, Scale: 4, Disp: 4}, dp)
	ADDQ(rowStep, pp)
	DECQ(oh)
	JNE(LabelRef(name + "_row"))
	storeTapSums(accp, acc)
	VZEROUPPER()
	RET()
}
