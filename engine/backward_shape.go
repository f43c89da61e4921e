package engine

// Backward of a view: the planner gives the output gradient the storage of
// the input gradient, so there is nothing to do unless the program had to
// copy (then the gradient is added back).
func (ViewOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	dx := gradF(dIn, 0)
	if dOut[0] == nil || dx == nil || len(dx) == 0 || !dOut[0].DType.IsFloat() {
		return nil
	}
	if &dx[0] != &dOut[0].F[0] {
		addTo(dx, dOut[0].F)
	}
	return nil
}

// Backward scatters the output gradient back through the permutation.
func (op *TransposeOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	return op.backwardFresh(c, in, out, dOut, dIn, nil)
}

// overwrites reports that the input gradient can be written outright (a
// permutation writes every element once).
func (op *TransposeOp) overwrites(i int) bool { return i == 0 }

// backwardFresh is Backward that writes dIn[0] outright when fresh[0].
func (op *TransposeOp) backwardFresh(c *Ctx, in, out, dOut, dIn []*Tensor, fresh []bool) error {
	dx := gradF(dIn, 0)
	if dOut[0] == nil || dx == nil {
		return nil
	}
	scatter(op.outShape, op.inStride, op.cnt, 0, dOut[0].F, dx, isFresh(fresh, 0))
	return nil
}

// scatterAdd is the adjoint of gatherStrided: x[start + Σ i_d·stride_d] +=
// y[i] for every output index i in order.
func scatterAdd(shape, stride, cnt []int, start int, y, x []float32) {
	scatter(shape, stride, cnt, start, y, x, false)
}

// scatter is scatterAdd, or with set an assignment instead of a sum.
func scatter(shape, stride, cnt []int, start int, y, x []float32, set bool) {
	rank := len(shape)
	if len(y) == 0 {
		return
	}
	if rank == 0 {
		if set {
			x[start] = y[0]
		} else {
			x[start] += y[0]
		}
		return
	}
	clear(cnt)
	last, ls := shape[rank-1], stride[rank-1]
	xo := start
	for yo := 0; yo < len(y); yo += last {
		row := y[yo : yo+last]
		k := xo
		if set {
			for _, v := range row {
				x[k] = v
				k += ls
			}
		} else {
			for _, v := range row {
				x[k] += v
				k += ls
			}
		}
		xo = advance(cnt[:rank-1], shape[:rank-1], stride[:rank-1], xo)
	}
}

// Backward hands each input its block of the output gradient.
func (op *ConcatOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	return op.backwardFresh(c, in, out, dOut, dIn, nil)
}

// overwrites reports that every input gradient can be written outright.
func (op *ConcatOp) overwrites(i int) bool { return true }

// backwardFresh is Backward that copies into dIn[i] when fresh[i].
func (op *ConcatOp) backwardFresh(c *Ctx, in, out, dOut, dIn []*Tensor, fresh []bool) error {
	if dOut[0] == nil || !dOut[0].DType.IsFloat() {
		return nil
	}
	dy := dOut[0].F
	total := 0
	for _, s := range op.Sizes {
		total += s
	}
	for o := 0; o < op.Outer; o++ {
		off := o * total
		for i, s := range op.Sizes {
			if d := gradF(dIn, i); d != nil && isFresh(fresh, i) {
				copy(d[o*s:(o+1)*s], dy[off:off+s])
			} else if d != nil {
				addTo(d[o*s:(o+1)*s], dy[off:off+s])
			}
			off += s
		}
	}
	return nil
}

// Backward joins the output gradients (absent ones count as zero) into the
// input gradient.
func (op *SplitOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	dx := gradF(dIn, 0)
	if dx == nil {
		return nil
	}
	total := 0
	for _, s := range op.Sizes {
		total += s
	}
	for o := 0; o < op.Outer; o++ {
		off := o * total
		for i, s := range op.Sizes {
			if d := gradF(dOut, i); d != nil {
				addTo(dx[off:off+s], d[o*s:(o+1)*s])
			}
			off += s
		}
	}
	return nil
}

// Backward scatters the slice's gradient back into the input box.
func (op *SliceOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	dx := gradF(dIn, 0)
	if dOut[0] == nil || dx == nil {
		return nil
	}
	scatterAdd(op.outShape, op.stride, op.cnt, op.start, dOut[0].F, dx)
	return nil
}

// Backward adds each gathered slice's gradient back at its index (repeated
// indices accumulate).
func (op *GatherOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	dx := gradF(dIn, 0)
	if dOut[0] == nil || dx == nil {
		return nil
	}
	idx, dy := in[1].I, dOut[0].F
	n := op.Inner
	yo := 0
	for o := 0; o < op.Outer; o++ {
		base := o * op.AxisLen * n
		for _, i := range idx {
			if i < 0 {
				i += int64(op.AxisLen)
			}
			addTo(dx[base+int(i)*n:base+int(i)*n+n], dy[yo:yo+n])
			yo += n
		}
	}
	return nil
}

// Backward passes the gradient of a float-to-float Cast through.
func (op *CastOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	dx := gradF(dIn, 0)
	if dOut[0] == nil || dx == nil || !in[0].DType.IsFloat() || !op.To.IsFloat() {
		return nil
	}
	addTo(dx, dOut[0].F)
	return nil
}
