package engine

import "math"

// Backward adds the gradients of Y = alpha·op(A)·op(B) + beta·C:
// dA = alpha·dY·op(B)ᵀ (transposed back when transA), dB likewise, and dC
// = beta·dY summed over C's broadcast axes.
func (op *GemmOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	if dOut[0] == nil {
		return nil
	}
	da, db, dc := gradF(dIn, 0), gradF(dIn, 1), gradF(dIn, 2)
	a, b, dy := in[0].F, in[1].F, dOut[0].F
	lda, ldb := op.K, op.N
	if op.TransA {
		lda = op.M
	}
	if op.TransB {
		ldb = op.K
	}
	if da != nil {
		if !op.TransA { // dA (M x K) += alpha·dY·op(B)ᵀ
			c.K.Sgemm(false, !op.TransB, op.M, op.K, op.N, op.Alpha, dy, op.N, b, ldb, 1, da, op.K)
		} else { // dA (K x M) += alpha·op(B)·dYᵀ
			c.K.Sgemm(op.TransB, true, op.K, op.M, op.N, op.Alpha, b, ldb, dy, op.N, 1, da, op.M)
		}
	}
	if db != nil {
		if !op.TransB { // dB (K x N) += alpha·op(A)ᵀ·dY
			c.K.Sgemm(!op.TransA, false, op.K, op.N, op.M, op.Alpha, a, lda, dy, op.N, 1, db, op.N)
		} else { // dB (N x K) += alpha·dYᵀ·op(A)
			c.K.Sgemm(true, op.TransA, op.N, op.K, op.M, op.Alpha, dy, op.N, a, lda, 1, db, op.K)
		}
	}
	if dc != nil && op.bc != nil && op.Beta != 0 {
		reduceBroadcast(op.bc, dy, op.Beta, dc)
	}
	return nil
}

// reduceBroadcast is the adjoint of broadcastScaled: it adds s·dy, summed
// over the axes along which the first operand of bc was broadcast, into
// dst.
func reduceBroadcast(bc *broadcast, dy []float32, s float32, dst []float32) {
	clear(bc.idx)
	oa, oy, n := 0, 0, bc.inner
	for r := 0; r < bc.outer; r++ {
		row := dy[oy : oy+n]
		if bc.innerA == 1 {
			d := dst[oa : oa+n]
			for i, g := range row {
				d[i] += s * g
			}
		} else {
			var sum float32
			for _, g := range row {
				sum += g
			}
			dst[oa] += s * sum
		}
		oy += n
		oa = advance(bc.idx, bc.dims, bc.sa, oa)
	}
}

// Backward adds dA = dY·Bᵀ and dB = Aᵀ·dY per batch item, accumulating
// over broadcast batch items.
func (op *MatMulOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	if dOut[0] == nil || op.N == 0 || op.K == 0 {
		return nil
	}
	da, db := gradF(dIn, 0), gradF(dIn, 1)
	a, b, dy := in[0].F, in[1].F, dOut[0].F
	if op.flat {
		rows := len(dy) / op.N
		if da != nil {
			c.K.Sgemm(false, true, rows, op.K, op.N, 1, dy, op.N, b, op.N, 1, da, op.K)
		}
		if db != nil {
			c.K.Sgemm(true, false, op.K, op.N, rows, 1, a, op.K, dy, op.N, 1, db, op.N)
		}
		return nil
	}
	mn := op.M * op.N
	for i := range op.offA {
		g := dy[i*mn : (i+1)*mn]
		if da != nil {
			c.K.Sgemm(false, true, op.M, op.K, op.N, 1, g, op.N, b[op.offB[i]:], op.N, 1, da[op.offA[i]:], op.K)
		}
		if db != nil {
			c.K.Sgemm(true, false, op.K, op.N, op.M, 1, a[op.offA[i]:], op.K, g, op.N, 1, db[op.offB[i]:], op.N)
		}
	}
	return nil
}

// Backward adds the softmax gradient y·(dy − Σ dy·y) (LogSoftmax:
// dy − exp(y)·Σ dy) per normalized group.
func (op *SoftmaxOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	dx := gradF(dIn, 0)
	if dOut[0] == nil || dx == nil {
		return nil
	}
	y, dy := out[0].F, dOut[0].F
	for o := 0; o < op.Outer; o++ {
		for i := 0; i < op.Inner; i++ {
			base := o*op.Len*op.Inner + i
			var s float64
			for j := 0; j < op.Len; j++ {
				k := base + j*op.Inner
				if op.Log {
					s += float64(dy[k])
				} else {
					s += float64(dy[k] * y[k])
				}
			}
			sf := float32(s)
			for j := 0; j < op.Len; j++ {
				k := base + j*op.Inner
				if op.Log {
					dx[k] += dy[k] - float32(math.Exp(float64(y[k])))*sf
				} else {
					dx[k] += y[k] * (dy[k] - sf)
				}
			}
		}
	}
	return nil
}

// Backward broadcasts the reduced gradient back over the reduced axes
// (divided by their size for ReduceMean).
func (op *ReduceOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	dx := gradF(dIn, 0)
	if dOut[0] == nil || dx == nil {
		return nil
	}
	dy := dOut[0].F
	if op.copyAll {
		addTo(dx, dy)
		return nil
	}
	rank := len(op.inShape)
	if rank == 0 {
		dx[0] += dy[0]
		return nil
	}
	scale := float32(1)
	if op.Mean && op.count > 0 {
		scale = 1 / float32(op.count)
	}
	last := op.inShape[rank-1]
	ls := op.outIdx[rank-1]
	outer := len(dx) / max(last, 1)
	cnt := op.cnt
	clear(cnt)
	yo := 0
	for r := 0; r < outer; r++ {
		row := dx[r*last : (r+1)*last]
		if ls == 0 {
			g := dy[yo] * scale
			for j := range row {
				row[j] += g
			}
		} else {
			for j, g := range dy[yo : yo+last] {
				row[j] += g * scale
			}
		}
		yo = advance(cnt[:rank-1], op.inShape[:rank-1], op.outIdx[:rank-1], yo)
	}
	return nil
}
