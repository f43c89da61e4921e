package engine

import "github.com/lprconv/lprconv/engine/kernels"

// Channel-major activations between small-plane convolutions.
//
// An activation of N images with C channels of HW-value planes is stored
// image-major (NCHW, plane (n, c) at (n*C + c)*HW), except where
// chooseLayouts stores it channel-major across the batch (CNHW, plane
// (n, c) at (c*N + n)*HW). In CNHW, channel c of every image is one run of
// N*HW values, so the batched path of a group-1 pointwise convolution
// (Chunk > 0: planes of at most 16 pixels) is one GEMM
// Y[M][N*HW] = W[M][C] * X[C][N*HW] that reads its input and writes its
// output in place, where in NCHW it first copies X into a [C][N*HW]
// column matrix and afterwards scatters Y back to NCHW; its fused residual
// (identity, or the diag scale d[m]*r + db[m]) is then a contiguous row per
// output channel. A depthwise convolution works plane by plane and only
// addresses its planes differently (kernels.DepthwiseConv2DLayout). Every
// output value is computed with the same operations in the same order as
// in NCHW; only addresses move, so the results are bit-identical.
//
// A value is CNHW when its producer and every reader support it: the
// batched pointwise convolution (its input, output and residual source
// independently) and the depthwise convolution (input and output, also as
// an LPR module's fused dw residual), at N > 1. Graph inputs, outputs and
// observed values (Options.Outputs) stay NCHW, as does every value read by
// any other op (pooling, shape ops, Gemm, ...), so a CNHW value never
// needs a conversion step: the convolution at the border packs or
// scatters, as it did for every layer before. On the kernel for depthwise
// planes of at most 16 values (kernels.DepthwiseTinyPlanes), which packs
// several planes per vector, input and output must share their layout to
// keep the bits, so such a pair is made NCHW when its layouts differ.
//
// Programs compiled for backward (Options.KeepForBackward) keep NCHW
// everywhere: their activations are read by the backward ops and by
// callers. Value on an activation that is neither a graph output nor
// observed may return CNHW data (such values are scratch in any case).

// convLayout says which of a convolution's activations are CNHW: input 0
// (x), output 0 (y), and input 3 (r: the source of a fused residual, the
// input of Res when Res is set).
type convLayout struct{ x, y, r bool }

// cnOut reports whether the convolution can write its output CNHW.
func (op *ConvOp) cnOut() bool {
	return op.N > 1 && (op.batchedPointwise() || (op.Kind == convDepthwise && !op.AddRes))
}

// cnIn reports whether the convolution can read its input slot CNHW.
func (op *ConvOp) cnIn(slot int) bool {
	switch slot {
	case 0:
		return op.cnOut()
	case 3:
		return op.N > 1 && op.batchedPointwise() && op.AddRes &&
			(op.Res == nil || op.Res.channelScale() || op.Res.Kind == convDepthwise)
	}
	return false
}

// batchedPointwise reports whether the convolution runs the batched path
// of a group-1 pointwise convolution.
func (op *ConvOp) batchedPointwise() bool {
	return op.Kind == convPointwise && op.Group == 1 && op.Chunk > 0
}

// chooseLayouts marks the values stored CNHW (see above) and sets the
// layouts of every convolution.
func (p *Program) chooseLayouts() {
	pinned := map[*value]bool{}
	for _, vs := range [][]*value{p.inputs, p.outputs, p.observed} {
		for _, v := range vs {
			pinned[v] = true
		}
	}
	cn := map[*value]bool{}
	for _, st := range p.steps {
		if op, ok := st.Op.(*ConvOp); ok && op.cnOut() && len(st.out) == 1 && !pinned[st.out[0]] {
			cn[st.out[0]] = true
		}
	}
	for _, st := range p.steps {
		op, _ := st.Op.(*ConvOp)
		for i, v := range st.in {
			if v != nil && cn[v] && (op == nil || !op.cnIn(i)) {
				delete(cn, v)
			}
		}
	}
	// tiny depthwise planes: input and output in one layout
	for changed := true; changed; {
		changed = false
		for _, st := range p.steps {
			op, ok := st.Op.(*ConvOp)
			if !ok {
				continue
			}
			check := func(dw *ConvOp, in, out *value) {
				if dw.Kind == convDepthwise && cn[in] != cn[out] && kernels.DepthwiseTinyPlanes(dw.Geom) {
					delete(cn, in)
					delete(cn, out)
					changed = true
				}
			}
			check(op, st.in[0], st.out[0])
			if op.Res != nil && len(st.in) > 3 {
				check(op.Res, st.in[3], st.out[0])
			}
		}
	}
	for _, st := range p.steps {
		op, ok := st.Op.(*ConvOp)
		if !ok {
			continue
		}
		op.cn = convLayout{x: cn[st.in[0]], y: cn[st.out[0]]}
		if len(st.in) > 3 {
			op.cn.r = cn[st.in[3]]
		}
		if op.Res != nil {
			op.Res.cn = convLayout{x: op.cn.r, y: op.cn.y}
		}
	}
}

// fillResidualRows writes rows [lo, hi) of the fused residual of the
// batched path from a CNHW source: row m of the GEMM output (cols values
// at r.yp[m*r.ldc:]) gets the current chunk's columns of channel m, copied
// or scaled (d[m]*v + db[m]).
func (op *ConvOp) fillResidualRows(lo, hi int) {
	r := &op.cur
	ohw := op.Geom.OH * op.Geom.OW
	nc := op.N * ohw
	src := r.res.r[lo*nc+r.n0*ohw:]
	if r.res.mode == resScale {
		var db []float32
		if r.res.db != nil {
			db = r.res.db[lo:hi]
		}
		kernels.ScaleRows(r.yp[lo*r.ldc:], r.ldc, src, nc, hi-lo, r.cols, r.res.d[lo:hi], db)
		return
	}
	stridedCopy(r.yp[lo*r.ldc:], r.ldc, src, nc, r.cols, hi-lo)
}
