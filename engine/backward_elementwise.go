package engine

import (
	"fmt"
	"math"
)

// Backward adds dY·f'(x) into the input gradient. Relu passes the
// gradient where x > 0, Clip where lo <= x <= hi (the bounds get none);
// the smooth functions use their output where that is cheaper.
func (op *UnaryOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	return op.backwardFresh(c, in, out, dOut, dIn, nil)
}

// overwrites reports that the input gradient can be written outright.
func (op *UnaryOp) overwrites(i int) bool { return i == 0 }

// backwardFresh is Backward that writes dIn[0] outright when fresh[0]
// (Relu directly, the other functions after zeroing it).
func (op *UnaryOp) backwardFresh(c *Ctx, in, out, dOut, dIn []*Tensor, fresh []bool) error {
	dx := gradF(dIn, 0)
	if dOut[0] == nil || dx == nil {
		return nil
	}
	x, y, dy := in[0].F, out[0].F, dOut[0].F
	dx = dx[:len(dy)]
	if op.Kind == uRelu {
		parallelRelu(c, dx, dy, y, isFresh(fresh, 0))
		return nil
	}
	if isFresh(fresh, 0) {
		clear(dx)
	}
	switch op.Kind {
	case uClip:
		lo, hi := op.clipBounds(in)
		for i, v := range x {
			if v >= lo && v <= hi {
				dx[i] += dy[i]
			}
		}
	case uSigmoid:
		for i, s := range y {
			dx[i] += dy[i] * s * (1 - s)
		}
	case uHardSigmoid:
		for i, v := range x {
			if t := op.Alpha*v + op.Beta; t > 0 && t < 1 {
				dx[i] += dy[i] * op.Alpha
			}
		}
	case uHardSwish:
		for i, v := range x {
			switch {
			case v >= 3:
				dx[i] += dy[i]
			case v > -3:
				dx[i] += dy[i] * (v/3 + 0.5)
			}
		}
	case uLeakyRelu:
		for i, v := range x {
			if v < 0 {
				dx[i] += dy[i] * op.Alpha
			} else {
				dx[i] += dy[i]
			}
		}
	case uTanh:
		for i, t := range y {
			dx[i] += dy[i] * (1 - t*t)
		}
	case uExp:
		for i, e := range y {
			dx[i] += dy[i] * e
		}
	case uNeg:
		for i, g := range dy {
			dx[i] -= g
		}
	case uAbs:
		for i, v := range x {
			if v > 0 {
				dx[i] += dy[i]
			} else if v < 0 {
				dx[i] -= dy[i]
			}
		}
	case uSqrt:
		for i, s := range y {
			dx[i] += dy[i] * 0.5 / s
		}
	case uIdentityCopy:
		addTo(dx, dy)
	default:
		return fmt.Errorf("no backward for unary kind %d", op.Kind)
	}
	return nil
}

// Backward adds the gradients of an element-wise Add, Sub, Mul or Div,
// summed over the axes along which an operand was broadcast.
func (op *BinaryOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	return op.backwardFresh(c, in, out, dOut, dIn, nil)
}

// overwrites reports whether operand i's gradient can be written outright:
// when neither operand is broadcast.
func (op *BinaryOp) overwrites(i int) bool { return op.bc.sameSize }

// backwardFresh is Backward that writes dIn[i] outright when fresh[i].
func (op *BinaryOp) backwardFresh(c *Ctx, in, out, dOut, dIn []*Tensor, fresh []bool) error {
	da, db := gradF(dIn, 0), gradF(dIn, 1)
	if dOut[0] == nil || (da == nil && db == nil) || !out[0].DType.IsFloat() {
		return nil
	}
	bc := op.bc
	a, b, y, dy := in[0].F, in[1].F, out[0].F, dOut[0].F
	if bc.sameSize {
		if da != nil {
			binarySame(op.Kind, false, a, b, y, dy, da, isFresh(fresh, 0))
		}
		if db != nil {
			binarySame(op.Kind, true, a, b, y, dy, db, isFresh(fresh, 1))
		}
		return nil
	}
	clear(bc.idx)
	oa, ob, oy := 0, 0, 0
	n := bc.inner
	for r := 0; r < bc.outer; r++ {
		dyr := dy[oy : oy+n]
		if da != nil {
			binaryGradA(op.Kind, b[ob:], dyr, da[oa:], bc.innerA, bc.innerB)
		}
		if db != nil {
			binaryGradB(op.Kind, a[oa:], b[ob:], y[oy:oy+n], dyr, db[ob:], bc.innerA, bc.innerB)
		}
		oy += n
		for d := len(bc.dims) - 1; d >= 0; d-- {
			bc.idx[d]++
			oa += bc.sa[d]
			ob += bc.sb[d]
			if bc.idx[d] < bc.dims[d] {
				break
			}
			oa -= bc.sa[d] * bc.dims[d]
			ob -= bc.sb[d] * bc.dims[d]
			bc.idx[d] = 0
		}
	}
	return nil
}

// binaryGradA adds the gradient of the first operand along one output row
// (sa, sb: operand strides along the row, 0 or 1).
func binaryGradA(k binKind, b, dy, da []float32, sa, sb int) {
	if sa == 1 {
		da = da[:len(dy)]
		switch {
		case k == bAdd || k == bSub:
			addTo(da, dy)
		case k == bMul && sb == 1:
			for i, g := range dy {
				da[i] += g * b[i]
			}
		case k == bMul:
			s := b[0]
			for i, g := range dy {
				da[i] += g * s
			}
		case sb == 1: // Div
			for i, g := range dy {
				da[i] += g / b[i]
			}
		default:
			s := b[0]
			for i, g := range dy {
				da[i] += g / s
			}
		}
		return
	}
	var s float32
	switch {
	case k == bAdd || k == bSub:
		for _, g := range dy {
			s += g
		}
	case k == bMul && sb == 1:
		for i, g := range dy {
			s += g * b[i]
		}
	case k == bMul:
		for _, g := range dy {
			s += g
		}
		s *= b[0]
	case sb == 1:
		for i, g := range dy {
			s += g / b[i]
		}
	default:
		for _, g := range dy {
			s += g
		}
		s /= b[0]
	}
	da[0] += s
}

// binaryGradB adds the gradient of the second operand along one output
// row; for Div it uses dy/db = -y/b.
func binaryGradB(k binKind, a, b, y, dy, db []float32, sa, sb int) {
	at := func(x []float32, s, i int) float32 { return x[s*i] }
	if sb == 1 {
		db = db[:len(dy)]
		switch k {
		case bAdd:
			addTo(db, dy)
		case bSub:
			for i, g := range dy {
				db[i] -= g
			}
		case bMul:
			if sa == 1 {
				for i, g := range dy {
					db[i] += g * a[i]
				}
			} else {
				s := a[0]
				for i, g := range dy {
					db[i] += g * s
				}
			}
		case bDiv:
			for i, g := range dy {
				db[i] -= g * y[i] / b[i]
			}
		}
		return
	}
	var s float32
	switch k {
	case bAdd:
		for _, g := range dy {
			s += g
		}
	case bSub:
		for _, g := range dy {
			s -= g
		}
	case bMul:
		for i, g := range dy {
			s += g * at(a, sa, i)
		}
	case bDiv:
		for i, g := range dy {
			s -= g * y[i]
		}
		s /= b[0]
	}
	db[0] += s
}

// reluMask writes dy where the Relu output y is positive and 0 elsewhere
// (see reluBackward).
func reluMask(dx, dy, y []float32) {
	dx, dy = dx[:len(y)], dy[:len(y)]
	for i, v := range y {
		b := math.Float32bits(v)
		m := uint32(int32(b|-b) >> 31)
		dx[i] = math.Float32frombits(math.Float32bits(dy[i]) & m)
	}
}

// reluBackward adds dy where the Relu output y is positive, without
// branches: y >= +0, so its bits are nonzero exactly where y > 0, and
// bits|-bits then has the sign bit set.
func reluBackward(dx, dy, y []float32) {
	dx, dy = dx[:len(y)], dy[:len(y)]
	for i, v := range y {
		b := math.Float32bits(v)
		m := uint32(int32(b|-b) >> 31)
		dx[i] += math.Float32frombits(math.Float32bits(dy[i]) & m)
	}
}

// binarySame writes (set) or adds the gradient of the first (or, with
// second, the second) operand of an element-wise op whose operands have
// the output's shape.
func binarySame(k binKind, second bool, a, b, y, dy, d []float32, set bool) {
	n := len(dy)
	a, b, y, d = a[:n], b[:n], y[:n], d[:n]
	switch {
	case k == bAdd || (k == bSub && !second):
		if set {
			copy(d, dy)
		} else {
			addTo(d, dy)
		}
	case k == bSub && set:
		for i, g := range dy {
			d[i] = -g
		}
	case k == bSub:
		for i, g := range dy {
			d[i] -= g
		}
	case k == bMul:
		o := b
		if second {
			o = a
		}
		if set {
			for i, g := range dy {
				d[i] = g * o[i]
			}
		} else {
			for i, g := range dy {
				d[i] += g * o[i]
			}
		}
	default: // Div: d/da = 1/b, d/db = -y/b
		if set {
			clear(d)
		}
		if second {
			for i, g := range dy {
				d[i] -= g * y[i] / b[i]
			}
		} else {
			for i, g := range dy {
				d[i] += g / b[i]
			}
		}
	}
}
