package main

import (
	"fmt"
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Constant of the max-pooling kernels: -Inf, the value of the padding.
var negInf Mem

func poolData() {
	negInf = GLOBL("poolNegInf", RODATA|NOPTR)
	DATA(0, U32(math.Float32bits(float32(math.Inf(-1)))))
}

// rangeMax is the VRANGEPS immediate for max(a, b) with the sign of the
// comparison result: NaN in either operand gives NaN and max(-0, +0) is
// +0, as Go's max.
const rangeMax = 0x05

// maxPoolDirect emits out[y*ow+x] = max over the taps inside the h x wd
// plane of in[(s*y-pt+ky)*wd + s*x-pl+kx] (-Inf when none is), a 3x3 max
// pooling window of stride s, for count planes inStride and outStride
// values apart; zero must point to at least wd values of -Inf (the rows in
// the vertical padding), as the depthwise kernels' zero row. VRANGEPS
// drops a NaN operand, so the kernel returns non-zero when it read a NaN
// (the caller then recomputes the planes in Go).
func maxPoolDirect(name string, s int) {
	leaf(name, "func(out, in, zero *float32, h, wd, oh, ow, pt, pl, count, inStride, outStride int) (nan uint32)",
		fmt.Sprintf("%s computes a 3x3 stride-%d max pooling of planes and reports whether it met a NaN.", name, s))
	outp := Load(Param("out"), GP64())
	nan := GP32()
	XORL(nan, nan)
	fill := ZMM()
	VBROADCASTSS(negInf, fill)
	acc := [3]VecVirtual{ZMM(), ZMM(), ZMM()}
	directPlane(name, s, directBody{
		begin: func(kst, outOff Register) {},
		tap: func(ky, kx int, v VecVirtual, kst Register) {
			t := GP32()
			VCMPPS(U8(3), v, v, K0) // unordered: NaN lanes
			KMOVW(K0, t)
			ORL(t, nan)
			if kx == 0 {
				VMOVAPS(v, acc[ky])
				return
			}
			VRANGEPS(U8(rangeMax), v, acc[ky], acc[ky])
		},
		end: func(kst, outOff Register) {
			VRANGEPS(U8(rangeMax), acc[1], acc[0], acc[0])
			VRANGEPS(U8(rangeMax), acc[2], acc[0], acc[0])
			VMOVUPS(acc[0], kst, Mem{Base: outp, Index: outOff, Scale: 1})
		},
		nextImage: func() { addParamBytes("outStride", outp) },
		fill:      fill,
	})
	Store(nan, ReturnIndex(0))
	VZEROUPPER()
	RET()
}
