package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// dwFlatS2Forward emits the stride-2 3x3 depthwise convolution, pads 1 at
// the top and left, of the planes of count consecutive channels (in and
// out planes inStride and outStride values apart, each channel with its
// own 9 weights at w and its bias at bias), through four sub-planes of
// the input in scratch: sub-plane 2*(y%2) + x%2, sub values after the
// previous one, holds the values of the rows y and columns x of those
// parities, row y/2 and column x/2 at (y/2)*ow + x/2 (ow = ceil(wd/2)
// values a row). Output o = oy*ow + ox then reads tap (ky, kx) at o plus
// a constant offset in one sub-plane: rows 2oy-1, 2oy and 2oy+1 are odd
// row oy-1, even row oy and odd row oy; columns 2ox-1, 2ox and 2ox+1 are
// odd column ox-1, even column ox and odd column ox. So the flat kernel's
// loop serves, with its masks (masks[v*10+k], v = o/16; the caller sets
// the bits of the taps inside the plane and the lanes stored), the same
// tap order and the same bits as dwDirectForward. Each row of a sub-plane
// is written whole 16 values at a time: a sub-plane needs 16 values of
// slack after its last row (sub >= ceil(h/2)*ow + 16). With clip the
// outputs are clamped as dwDirectForward's.
func dwFlatS2Forward(name string, clip bool) {
	sig := "func(out, in, scratch, w, bias *float32, masks *uint16, h, wd, ow, sub, nvec, count, inStride, outStride int)"
	doc := name + " computes the 3x3 stride-2 depthwise convolutions of consecutive channels through four sub-planes of their inputs."
	if clip {
		sig = sig[:len(sig)-1] + ", lo, hi float32)"
		doc = doc[:len(doc)-1] + ", clamped to [lo, hi]."
	}
	leaf(name, sig, doc)
	outp := Load(Param("out"), GP64())
	inp := Load(Param("in"), GP64())
	wp := Load(Param("w"), GP64())
	bp := Load(Param("bias"), GP64())
	clamp := clampOutput(clip)
	bias := ZMM()
	acc := [3]VecVirtual{ZMM(), ZMM(), ZMM()}
	v := ZMM()
	idxE, idxO := ZMM(), ZMM()
	VMOVUPS(evenIndex, idxE)
	VMOVUPS(oddIndex, idxO)

	Label(name + "_image")
	// split the plane into the sub-planes: row r to sub-planes 2*(r%2)
	// (even columns) and 2*(r%2)+1 (odd ones), at row r/2
	{
		r := GP64()
		XORQ(r, r)
		src := GP64()
		MOVQ(inp, src)
		Label(name + "_split_row")
		dE := GP64()
		t := GP64()
		MOVQ(r, t)
		ANDQ(Imm(1), t)
		IMULQ(paramAddr("sub"), t)
		SHLQ(Imm(1), t) // 2*sub*(r%2)
		dO := GP64()
		MOVQ(r, dO)
		SHRQ(Imm(1), dO)
		IMULQ(paramAddr("ow"), dO)
		ADDQ(dO, t)
		MOVQ(paramAddr("scratch"), dE)
		LEAQ(Mem{Base: dE, Index: t, Scale: 4}, dE)
		MOVQ(paramAddr("sub"), dO)
		LEAQ(Mem{Base: dE, Index: dO, Scale: 4}, dO)
		n := GP64()
		MOVQ(paramAddr("wd"), n)
		Label(name + "_split_block")
		// lanes: the low min(n, 32) of two vectors
		m := GP64()
		MOVQ(U32(1), m)
		SHLXQ(n, m, m)
		DECQ(m)
		all := GP64()
		MOVQ(U32(0xffffffff), all)
		CMPQ(n, Imm(32))
		CMOVQCC(all, m)
		KMOVD(m.As32(), K1)
		KSHIFTRD(Imm(16), K1, K2)
		v0, v1 := ZMM(), ZMM()
		VMOVUPS_Z(Mem{Base: src}, K1, v0)
		VMOVUPS_Z(Mem{Base: src, Disp: 64}, K2, v1)
		e := ZMM()
		VMOVAPS(v0, e)
		VPERMT2PS(v1, idxE, e)
		VPERMT2PS(v1, idxO, v0)
		VMOVUPS(e, Mem{Base: dE})
		VMOVUPS(v0, Mem{Base: dO})
		ADDQ(U32(64), dE)
		ADDQ(U32(64), dO)
		// the next block of this row, or the next row (src steps by the
		// row's values: 128 bytes a block, the rest at the end)
		CMPQ(n, Imm(32))
		JLE(LabelRef(name + "_split_rowdone"))
		ADDQ(U32(128), src)
		SUBQ(Imm(32), n)
		JMP(LabelRef(name + "_split_block"))
		Label(name + "_split_rowdone")
		LEAQ(Mem{Base: src, Index: n, Scale: 4}, src)
		INCQ(r)
		CMPQ(r, paramAddr("h"))
		JL(LabelRef(name + "_split_row"))
	}

	w := broadcastTaps(wp)
	VBROADCASTSS(Mem{Base: bp}, bias)
	ADDQ(U32(36), wp)
	ADDQ(U32(4), bp)
	p := GP64()
	o := GP64()
	mp := Load(Param("masks"), GP64())
	nv := Load(Param("nvec"), GP64())
	sub4 := loadBytes("sub")
	MOVQ(paramAddr("scratch"), p)
	MOVQ(outp, o)
	Label(name + "_vec")
	// rows[ky]: the even-column sub-plane of the tap row at output o
	rows := [3]GPVirtual{GP64(), p, GP64()}
	LEAQ(Mem{Base: p, Index: sub4, Scale: 2}, rows[2]) // odd rows
	MOVQ(rows[2], rows[0])
	ow4 := GP64()
	MOVQ(paramAddr("ow"), ow4)
	SHLQ(Imm(2), ow4)
	SUBQ(ow4, rows[0]) // odd row oy-1
	flatVector(name, func(ky, kx int) Mem {
		switch kx {
		case 0: // odd column ox-1
			return Mem{Base: rows[ky], Index: sub4, Scale: 1, Disp: -4}
		case 1: // even column ox
			return Mem{Base: rows[ky]}
		default: // odd column ox
			return Mem{Base: rows[ky], Index: sub4, Scale: 1}
		}
	}, w, bias, acc, v, clamp, p, o, mp, nv)
	nextPlaneOrReturn(name, inp, outp)
}
