//go:build amd64 && !purego

package kernels

// dwTinyCNTask runs dwTinyCNAVX512 over ranges of channels of CNHW
// activations.
type dwTinyCNTask struct {
	in, out, w, bias []float32
	idx              *[9 * 16]int32
	inCh, outCh      int // values per channel of in and out
	full             int // full vectors per channel
	inStep, outSt    int
	masks            uint64
	lo, hi           float32
}

// dwTinyCN runs the forward pass for CNHW planes of at most 16 values,
// several images of one channel per vector, and reports whether it did.
func (ctx *Context) dwTinyCN(g *ConvGeom, n int, in, weight, bias, out []float32, lo, hi float32) bool {
	per, _, _, ok := dwTinyLayout(g)
	if !ok {
		return false
	}
	plane, ohow := g.H*g.W, g.OH*g.OW
	if bias == nil {
		bias = ctx.scratch[0].zeroRow(g.C)
	}
	dwTinyIndex(g, per, &ctx.dwIdx, false)
	last := n % per
	t := &ctx.dwTinyCN1
	*t = dwTinyCNTask{in: in, out: out, w: weight, bias: bias, idx: &ctx.dwIdx,
		inCh: n * plane, outCh: n * ohow, full: n / per, inStep: per * plane, outSt: per * ohow,
		masks: laneMask(per*plane) | laneMask(last*plane)<<16 | laneMask(per*ohow)<<32 | laneMask(last*ohow)<<48,
		lo:    lo, hi: hi}
	threads := ctx.threads
	if n*g.C*ohow*9 < dwParallelMinMACs {
		threads = 1
	}
	ctx.parallel(t, g.C, threads)
	*t = dwTinyCNTask{}
	return true
}

func (t *dwTinyCNTask) run(lo, hi, tid int) {
	if hi <= lo {
		return
	}
	in := t.in[lo*t.inCh : hi*t.inCh]
	out := t.out[lo*t.outCh : hi*t.outCh]
	w := t.w[lo*9 : hi*9]
	b := t.bias[lo:hi]
	dwTinyCNAVX512(&out[0], &in[0], &w[0], &b[0], &t.idx[0], hi-lo, t.full, t.inStep, t.outSt, t.masks, t.lo, t.hi)
}

// scaleRowsFast runs ScaleRows with AVX-512 and reports whether it did; b
// must not be nil.
func scaleRowsFast(dst []float32, ldd int, src []float32, lds, rows, cols int, d, b []float32) bool {
	if !cpu.avx512 {
		return false
	}
	scaleRowsAVX512(&dst[0], ldd, &src[0], lds, rows, cols, &d[0], &b[0])
	return true
}
