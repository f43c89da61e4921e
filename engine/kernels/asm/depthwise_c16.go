package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// dwC16 emits a 3x3 depthwise convolution over 16 channels at once, in a
// channel-interleaved layout: p holds a zero-padded plane of wp columns per
// row with 16 channel values per pixel, and
// out[(y*ow+x)*16+c] = clamp(bias[c] + sum w[k*16+c] * p[((s*y+ky)*wp + s*x+kx)*16+c]).
func dwC16() {
	name := "dwC16AVX512"
	TEXT(name, NOSPLIT, "func(out, p, w, bias *float32, wp, oh, ow, s int, lo, hi float32)")
	Pragma("noescape")
	Doc(name + " computes a 3x3 depthwise convolution of 16 interleaved channels.")
	outp := Load(Param("out"), GP64())
	pp := Load(Param("p"), GP64())
	wptr := Load(Param("w"), GP64())
	var w [9]VecVirtual
	for i := range w {
		w[i] = ZMM()
		VMOVUPS(Mem{Base: wptr, Disp: 64 * i}, w[i])
	}
	bp := Load(Param("bias"), GP64())
	vb := ZMM()
	VMOVUPS(Mem{Base: bp}, vb)
	vlo, vhi := ZMM(), ZMM()
	VBROADCASTSS(paramAddr("lo"), vlo)
	VBROADCASTSS(paramAddr("hi"), vhi)
	wp64 := Load(Param("wp"), GP64())
	SHLQ(Imm(6), wp64)
	s := Load(Param("s"), GP64())
	step := GP64() // bytes between two output columns in p
	MOVQ(s, step)
	SHLQ(Imm(6), step)
	rowStep := GP64() // bytes between two output rows in p
	MOVQ(wp64, rowStep)
	IMULQ(s, rowStep)
	oh := Load(Param("oh"), GP64())

	Label(name + "_row")
	ow := Load(Param("ow"), GP64())
	base := GP64()
	MOVQ(pp, base)
	Label(name + "_col")
	acc := [3]VecVirtual{ZMM(), ZMM(), ZMM()}
	for ky := 0; ky < 3; ky++ {
		for kx := 0; kx < 3; kx++ {
			m := Mem{Base: base, Disp: 64 * kx}
			switch ky {
			case 1:
				m.Index, m.Scale = wp64, 1
			case 2:
				m.Index, m.Scale = wp64, 2
			}
			switch {
			case ky == 0 && kx == 0:
				VMOVAPS(vb, acc[0])
				VFMADD231PS(m, w[0], acc[0])
			case kx == 0:
				VMULPS(m, w[ky*3], acc[ky])
			default:
				VFMADD231PS(m, w[ky*3+kx], acc[ky])
			}
		}
	}
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[2], acc[0], acc[0])
	VMAXPS(acc[0], vlo, acc[0])
	VMINPS(acc[0], vhi, acc[0])
	VMOVUPS(acc[0], Mem{Base: outp})
	ADDQ(U32(64), outp)
	ADDQ(step, base)
	DECQ(ow)
	JNE(LabelRef(name + "_col"))
	ADDQ(rowStep, pp)
	DECQ(oh)
	JNE(LabelRef(name + "_row"))
	VZEROUPPER()
	RET()
}
