package engine

import (
	"fmt"
	"math"
	"slices"

	"github.com/lprconv/lprconv/shapeinfer"
)

type unaryKind int

const (
	uRelu unaryKind = iota
	uSigmoid
	uHardSigmoid
	uHardSwish
	uClip
	uLeakyRelu
	uTanh
	uExp
	uNeg
	uAbs
	uSqrt
	uIdentityCopy
)

// UnaryOp applies an element-wise function to a float tensor.
type UnaryOp struct {
	Kind        unaryKind
	Alpha, Beta float32 // HardSigmoid, LeakyRelu
	Lo, Hi      float32 // Clip bounds (attribute form or constant inputs)
	clipInputs  bool    // Clip bounds come from inputs 1 and 2 at run time

	// operands of the current apply, for the worker threads
	x, y   []float32
	lo, hi float32
}

func buildUnary(k unaryKind) func(b *nodeBuild) (Op, error) {
	return func(b *nodeBuild) (Op, error) {
		x, err := b.need(0)
		if err != nil {
			return nil, err
		}
		if !x.dtype.IsFloat() {
			return nil, fmt.Errorf("%s supports float tensors only, got %s", b.node.OpType, x.dtype)
		}
		op := &UnaryOp{Kind: k}
		switch k {
		case uHardSigmoid:
			op.Alpha, op.Beta = b.attrFloat("alpha", 0.2), b.attrFloat("beta", 0.5)
		case uLeakyRelu:
			op.Alpha = b.attrFloat("alpha", 0.01)
		case uClip:
			op.Lo, op.Hi = float32(math.Inf(-1)), float32(math.Inf(1))
			if b.opset < 11 {
				op.Lo = b.attrFloat("min", -math.MaxFloat32)
				op.Hi = b.attrFloat("max", math.MaxFloat32)
			} else {
				if b.has("min") || b.has("max") {
					return nil, fmt.Errorf("min/max attributes are opset<11 form; this model is opset %d", b.opset)
				}
				for i := 1; i <= 2; i++ {
					v := b.input(i)
					if v == nil {
						continue
					}
					if !v.dtype.IsFloat() || sizeOf(v.shape) != 1 {
						return nil, fmt.Errorf("Clip bound input %d must be a float scalar, got %s %v", i, v.dtype, v.shape)
					}
					if v.konst == nil {
						op.clipInputs = true
					} else if i == 1 {
						op.Lo = v.konst.F[0]
					} else {
						op.Hi = v.konst.F[0]
					}
				}
			}
		}
		b.setOut(0, x.shape, Float32)
		return op, nil
	}
}

// Forward applies the function.
func (op *UnaryOp) Forward(c *Ctx, in, out []*Tensor) error {
	lo, hi := op.clipBounds(in)
	op.apply(c, in[0].F, out[0].F, lo, hi)
	return nil
}

// clipBounds returns Clip's bounds: the attributes, or the min and max
// inputs where the node has them (opset 11 and later).
func (op *UnaryOp) clipBounds(in []*Tensor) (lo, hi float32) {
	lo, hi = op.Lo, op.Hi
	if op.clipInputs {
		if len(in) > 1 && in[1] != nil {
			lo = in[1].F[0]
		}
		if len(in) > 2 && in[2] != nil {
			hi = in[2].F[0]
		}
	}
	return lo, hi
}

// apply runs the function over x into y on the context's threads; lo and
// hi are the Clip bounds.
func (op *UnaryOp) apply(c *Ctx, x, y []float32, lo, hi float32) {
	op.x, op.y, op.lo, op.hi = x, y, lo, hi
	c.parallelFor(len(x), 1, op)
	op.x, op.y = nil, nil
}

func (op *UnaryOp) run(from, to int) {
	x, y := op.x[from:to], op.y[from:to]
	switch op.Kind {
	case uRelu:
		for i, v := range x {
			y[i] = max(v, 0) // branch-free: signs are unpredictable
		}
	case uSigmoid:
		for i, v := range x {
			y[i] = sigmoid(v)
		}
	case uHardSigmoid:
		for i, v := range x {
			y[i] = clamp(op.Alpha*v+op.Beta, 0, 1)
		}
	case uHardSwish:
		for i, v := range x {
			y[i] = v * clamp(v/6+0.5, 0, 1)
		}
	case uClip:
		lo, hi := op.lo, op.hi
		for i, v := range x {
			y[i] = clamp(v, lo, hi)
		}
	case uLeakyRelu:
		a := op.Alpha
		for i, v := range x {
			y[i] = max(v, 0) + a*min(v, 0)
		}
	case uTanh:
		for i, v := range x {
			y[i] = float32(math.Tanh(float64(v)))
		}
	case uExp:
		for i, v := range x {
			y[i] = float32(math.Exp(float64(v)))
		}
	case uNeg:
		for i, v := range x {
			y[i] = -v
		}
	case uAbs:
		for i, v := range x {
			y[i] = float32(math.Abs(float64(v)))
		}
	case uSqrt:
		for i, v := range x {
			y[i] = float32(math.Sqrt(float64(v)))
		}
	}
}

// clamp limits v to [lo, hi]; NaN stays NaN. It compiles to branch-free
// code, which matters because the comparisons are unpredictable.
func clamp(v, lo, hi float32) float32 {
	return min(max(v, lo), hi)
}

func sigmoid(v float32) float32 {
	if v >= 0 {
		return float32(1 / (1 + math.Exp(-float64(v))))
	}
	e := math.Exp(float64(v))
	return float32(e / (1 + e))
}

type binKind int

const (
	bAdd binKind = iota
	bSub
	bMul
	bDiv
)

// broadcast is a compiled numpy-style broadcast of two operands: the output
// dims collapsed as far as possible, with each operand's strides (0 on
// broadcast dims).
type broadcast struct {
	dims     []int
	sa, sb   []int
	inner    int // size of the last collapsed dim
	innerA   int // 0 or 1: stride of a along it
	innerB   int
	outer    int // number of inner rows
	idx      []int
	sameSize bool
}

// broadcastShape returns the numpy broadcast of shapes a and b
// (shapeinfer.Broadcast on the engine's int shapes).
func broadcastShape(a, b []int) ([]int, error) {
	out, err := shapeinfer.Broadcast(toInt64s(a), toInt64s(b))
	if err != nil {
		return nil, err
	}
	return toInts(out), nil
}

// bcastStrides returns the strides of shape a broadcast to out (0 where a
// has size 1 or is missing).
func bcastStrides(a, out []int) []int {
	s := make([]int, len(out))
	as := stridesOf(a)
	off := len(out) - len(a)
	for i := range out {
		j := i - off
		if j >= 0 && a[j] != 1 {
			s[i] = as[j]
		}
	}
	return s
}

func newBroadcast(a, b, out []int) *broadcast {
	bc := &broadcast{}
	if slices.Equal(a, b) {
		bc.sameSize = true
		bc.inner, bc.innerA, bc.innerB, bc.outer = sizeOf(out), 1, 1, 1
		return bc
	}
	sa, sb := bcastStrides(a, out), bcastStrides(b, out)
	// collapse adjacent dims where both operands are contiguous across them
	var dims, ra, rb []int
	for i, d := range out {
		if d == 1 {
			continue
		}
		if k := len(dims) - 1; k >= 0 && sa[i]*d == ra[k] && sb[i]*d == rb[k] {
			dims[k] *= d
			ra[k], rb[k] = sa[i], sb[i]
			continue
		}
		dims, ra, rb = append(dims, d), append(ra, sa[i]), append(rb, sb[i])
	}
	if len(dims) == 0 {
		dims, ra, rb = []int{1}, []int{0}, []int{0}
	}
	k := len(dims) - 1
	bc.dims, bc.sa, bc.sb = dims[:k], ra[:k], rb[:k]
	bc.inner, bc.innerA, bc.innerB = dims[k], ra[k], rb[k]
	bc.outer = sizeOf(bc.dims)
	bc.idx = make([]int, k)
	return bc
}

// BinaryOp is Add, Sub, Mul or Div with numpy broadcasting, on float or
// integer tensors.
type BinaryOp struct {
	Kind    binKind
	bc      *broadcast
	a, b, y []float32 // operands of the current Forward
}

func buildBinary(k binKind) func(b *nodeBuild) (Op, error) {
	return func(b *nodeBuild) (Op, error) {
		x, err := b.need(0)
		if err != nil {
			return nil, err
		}
		y, err := b.need(1)
		if err != nil {
			return nil, err
		}
		if x.dtype.IsFloat() != y.dtype.IsFloat() {
			return nil, fmt.Errorf("operand types differ: %s and %s", x.dtype, y.dtype)
		}
		if b.has("broadcast") || b.has("axis") {
			if b.attrInt("broadcast", 0) != 0 {
				return nil, fmt.Errorf("legacy broadcast attribute (opset < 7) is not supported")
			}
		}
		shape, err := broadcastShape(x.shape, y.shape)
		if err != nil {
			return nil, err
		}
		b.setOut(0, shape, x.dtype)
		return &BinaryOp{Kind: k, bc: newBroadcast(x.shape, y.shape, shape)}, nil
	}
}

// Forward computes the element-wise result; float work is split over
// threads by output rows (or within the single row).
func (op *BinaryOp) Forward(c *Ctx, in, out []*Tensor) error {
	bc := op.bc
	if !out[0].DType.IsFloat() {
		binaryRows(bc, op.Kind, in[0].I, in[1].I, out[0].I, 0, bc.outer, bc.idx)
		return nil
	}
	op.a, op.b, op.y = in[0].F, in[1].F, out[0].F
	if bc.outer == 1 {
		c.parallelFor(bc.inner, 1, op)
	} else if len(bc.dims) <= maxBroadcastDims {
		c.parallelFor(bc.outer, bc.inner, op)
	} else {
		binaryRows(bc, op.Kind, op.a, op.b, op.y, 0, bc.outer, bc.idx)
	}
	op.a, op.b, op.y = nil, nil, nil
	return nil
}

// maxBroadcastDims is the most collapsed outer dims that worker threads
// handle with an odometer on the stack.
const maxBroadcastDims = 8

// run computes output rows [lo, hi), or elements [lo, hi) of the single row.
func (op *BinaryOp) run(lo, hi int) {
	bc := op.bc
	if bc.outer == 1 {
		a, b := op.a, op.b
		if bc.innerA == 1 {
			a = a[lo:]
		}
		if bc.innerB == 1 {
			b = b[lo:]
		}
		binaryRow(op.Kind, a, b, op.y[lo:hi], bc.innerA, bc.innerB)
		return
	}
	var idx [maxBroadcastDims]int
	binaryRows(bc, op.Kind, op.a, op.b, op.y, lo, hi, idx[:len(bc.dims)])
}

// binaryRows computes output rows [lo, hi) using idx as the odometer.
func binaryRows[T float32 | int64](bc *broadcast, k binKind, a, b, y []T, lo, hi int, idx []int) {
	if hi <= lo || bc.inner == 0 {
		return
	}
	oa, ob := 0, 0
	r := lo
	for d := len(bc.dims) - 1; d >= 0; d-- {
		idx[d] = r % bc.dims[d]
		r /= bc.dims[d]
		oa += idx[d] * bc.sa[d]
		ob += idx[d] * bc.sb[d]
	}
	n := bc.inner
	oy := lo * n
	for r := lo; r < hi; r++ {
		binaryRow(k, a[oa:], b[ob:], y[oy:oy+n], bc.innerA, bc.innerB)
		oy += n
		// advance the odometer over the outer dims
		for d := len(bc.dims) - 1; d >= 0; d-- {
			idx[d]++
			oa += bc.sa[d]
			ob += bc.sb[d]
			if idx[d] < bc.dims[d] {
				break
			}
			oa -= bc.sa[d] * bc.dims[d]
			ob -= bc.sb[d] * bc.dims[d]
			idx[d] = 0
		}
	}
}

func binaryRow[T float32 | int64](k binKind, a, b, y []T, sa, sb int) {
	n := len(y)
	switch {
	case sa == 1 && sb == 1:
		a, b = a[:n], b[:n]
		switch k {
		case bAdd:
			for i := range y {
				y[i] = a[i] + b[i]
			}
		case bSub:
			for i := range y {
				y[i] = a[i] - b[i]
			}
		case bMul:
			for i := range y {
				y[i] = a[i] * b[i]
			}
		case bDiv:
			for i := range y {
				y[i] = div(a[i], b[i])
			}
		}
	case sa == 1:
		a = a[:n]
		s := b[0]
		switch k {
		case bAdd:
			for i := range y {
				y[i] = a[i] + s
			}
		case bSub:
			for i := range y {
				y[i] = a[i] - s
			}
		case bMul:
			for i := range y {
				y[i] = a[i] * s
			}
		case bDiv:
			for i := range y {
				y[i] = div(a[i], s)
			}
		}
	case sb == 1:
		b = b[:n]
		s := a[0]
		switch k {
		case bAdd:
			for i := range y {
				y[i] = s + b[i]
			}
		case bSub:
			for i := range y {
				y[i] = s - b[i]
			}
		case bMul:
			for i := range y {
				y[i] = s * b[i]
			}
		case bDiv:
			for i := range y {
				y[i] = div(s, b[i])
			}
		}
	default:
		var v T
		switch k {
		case bAdd:
			v = a[0] + b[0]
		case bSub:
			v = a[0] - b[0]
		case bMul:
			v = a[0] * b[0]
		case bDiv:
			v = div(a[0], b[0])
		}
		for i := range y {
			y[i] = v
		}
	}
}

// div divides; integer division by zero yields 0 instead of a panic.
func div[T float32 | int64](a, b T) T {
	var zero T
	if b == zero {
		switch any(zero).(type) {
		case int64:
			return zero
		}
	}
	return a / b
}
