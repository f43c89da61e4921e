package engine

import (
	"fmt"
	"math"
	"sort"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/shapeinfer"
)

// ViewOp is a view of its input with another shape (Reshape, Flatten,
// Squeeze, Unsqueeze, Identity, Dropout in inference). The planner makes
// output 0 share the input's storage; Forward copies only when it does not
// (and fills Dropout's optional mask with true).
type ViewOp struct{}

// AliasInput returns 0: the output views input 0.
func (ViewOp) AliasInput() int { return 0 }

// Forward copies when the planner could not alias, and fills a mask output.
func (ViewOp) Forward(c *Ctx, in, out []*Tensor) error {
	x, y := in[0], out[0]
	if x.DType.IsFloat() {
		if len(y.F) > 0 && &y.F[0] != &x.F[0] {
			copy(y.F, x.F)
		}
	} else if len(y.I) > 0 && &y.I[0] != &x.I[0] {
		copy(y.I, x.I)
	}
	if len(out) > 1 && out[1] != nil {
		for i := range out[1].I {
			out[1].I[i] = 1
		}
	}
	return nil
}

func buildIdentity(b *nodeBuild) (Op, error) {
	x, err := b.need(0)
	if err != nil {
		return nil, err
	}
	b.setOut(0, x.shape, x.dtype)
	return ViewOp{}, nil
}

func buildDropout(b *nodeBuild) (Op, error) {
	x, err := b.need(0)
	if err != nil {
		return nil, err
	}
	if b.has("is_test") && b.attrInt("is_test", 0) == 0 {
		return nil, fmt.Errorf("is_test=0 (training) is not supported")
	}
	if tm := b.input(2); tm != nil {
		v, err := b.constInts(2, "training_mode")
		if err != nil {
			return nil, err
		}
		if len(v) > 0 && v[0] != 0 {
			return nil, fmt.Errorf("training_mode=true is not supported (inference only)")
		}
	}
	b.setOut(0, x.shape, x.dtype)
	if len(b.outs) > 1 {
		dt := Bool
		if b.opset < 10 {
			dt = x.dtype
			if x.dtype.IsFloat() {
				return nil, fmt.Errorf("mask output with float type (opset < 10) is not supported")
			}
		}
		b.setOut(1, x.shape, dt)
	}
	return ViewOp{}, nil
}

func buildReshape(b *nodeBuild) (Op, error) {
	return buildView(b, func(x []int64) ([]int64, error) {
		if b.opset < 5 || b.has("shape") {
			return shapeinfer.Reshape(x, b.attrInts("shape"), b.attrInt("allowzero", 0) != 0)
		}
		if b.input(1) == nil {
			return nil, fmt.Errorf("shape input is required")
		}
		spec, err := b.constInts(1, "shape")
		if err != nil {
			return nil, err
		}
		return shapeinfer.Reshape(x, spec, b.attrInt("allowzero", 0) != 0)
	})
}

// buildView compiles a view operator (output 0 views input 0) whose output
// shape rule reads the input shape.
func buildView(b *nodeBuild, rule func(x []int64) ([]int64, error)) (Op, error) {
	x, err := b.need(0)
	if err != nil {
		return nil, err
	}
	shape, err := rule(toInt64s(x.shape))
	if err != nil {
		return nil, err
	}
	b.setOut(0, toInts(shape), x.dtype)
	return ViewOp{}, nil
}

func buildFlatten(b *nodeBuild) (Op, error) {
	return buildView(b, func(x []int64) ([]int64, error) {
		return shapeinfer.Flatten(x, b.attrInt("axis", 1))
	})
}

// axesArg reads axes from the attribute (older opsets) or input 1.
func axesArg(b *nodeBuild, inputForm bool) ([]int64, bool, error) {
	if inputForm {
		if b.has("axes") {
			return nil, false, fmt.Errorf("axes attribute is not allowed at opset %d (it is an input)", b.opset)
		}
		if b.input(1) == nil {
			return nil, false, nil
		}
		v, err := b.constInts(1, "axes")
		if v == nil {
			v = []int64{}
		}
		return v, true, err
	}
	if b.has("axes") {
		return append([]int64{}, b.attrInts("axes")...), true, nil
	}
	return nil, false, nil
}

func buildSqueeze(b *nodeBuild) (Op, error) {
	return buildView(b, func(x []int64) ([]int64, error) {
		axes, _, err := axesArg(b, b.opset >= 13)
		if err != nil {
			return nil, err
		}
		return shapeinfer.Squeeze(x, axes)
	})
}

func buildUnsqueeze(b *nodeBuild) (Op, error) {
	return buildView(b, func(x []int64) ([]int64, error) {
		axes, given, err := axesArg(b, b.opset >= 13)
		if err != nil {
			return nil, err
		}
		if !given {
			return nil, fmt.Errorf("axes are required")
		}
		return shapeinfer.Unsqueeze(x, axes)
	})
}

// TransposeOp permutes the axes of a tensor.
type TransposeOp struct {
	outShape []int
	inStride []int // input stride of each output axis
	cnt      []int
}

func buildTranspose(b *nodeBuild) (Op, error) {
	x, err := b.need(0)
	if err != nil {
		return nil, err
	}
	out, perm, err := shapeinfer.Transpose(toInt64s(x.shape), b.attrInts("perm"))
	if err != nil {
		return nil, err
	}
	rank := len(x.shape)
	st := stridesOf(x.shape)
	op := &TransposeOp{outShape: toInts(out), inStride: make([]int, rank), cnt: make([]int, rank)}
	for i, p := range perm {
		op.inStride[i] = st[p]
	}
	b.setOut(0, op.outShape, x.dtype)
	// iterate over the fewest, longest rows
	shape, strides := collapseDims(op.outShape, op.inStride)
	op.outShape, op.inStride, op.cnt = shape, strides[0], make([]int, len(shape))
	return op, nil
}

// Forward permutes.
func (op *TransposeOp) Forward(c *Ctx, in, out []*Tensor) error {
	if out[0].DType.IsFloat() {
		gatherStrided(op.outShape, op.inStride, op.cnt, 0, in[0].F, out[0].F)
	} else {
		gatherStrided(op.outShape, op.inStride, op.cnt, 0, in[0].I, out[0].I)
	}
	return nil
}

// ConcatOp joins tensors along an axis.
type ConcatOp struct {
	Outer int
	Sizes []int // per input: its axis length times the inner size
}

func buildConcat(b *nodeBuild) (Op, error) {
	if b.nIn() == 0 {
		return nil, fmt.Errorf("Concat needs at least one input")
	}
	if !b.has("axis") {
		return nil, fmt.Errorf("attribute axis is required")
	}
	shapes := make([][]int64, len(b.in))
	for i := range b.in {
		v, err := b.need(i)
		if err != nil {
			return nil, err
		}
		if v.dtype != b.in[0].dtype {
			return nil, fmt.Errorf("input %d is %s; input 0 is %s", i, v.dtype, b.in[0].dtype)
		}
		shapes[i] = toInt64s(v.shape)
	}
	shape, axis, err := shapeinfer.Concat(shapes, b.attrInt("axis", 0))
	if err != nil {
		return nil, err
	}
	first := b.in[0]
	op := &ConcatOp{Outer: sizeOf(first.shape[:axis])}
	inner := sizeOf(first.shape[axis+1:])
	for _, v := range b.in {
		op.Sizes = append(op.Sizes, v.shape[axis]*inner)
	}
	b.setOut(0, toInts(shape), first.dtype)
	return op, nil
}

// Forward concatenates.
func (op *ConcatOp) Forward(c *Ctx, in, out []*Tensor) error {
	if out[0].DType.IsFloat() {
		concat(op, in, out[0].F, func(t *Tensor) []float32 { return t.F })
	} else {
		concat(op, in, out[0].I, func(t *Tensor) []int64 { return t.I })
	}
	return nil
}

func concat[T float32 | int64](op *ConcatOp, in []*Tensor, y []T, get func(*Tensor) []T) {
	total := 0
	for _, s := range op.Sizes {
		total += s
	}
	for o := 0; o < op.Outer; o++ {
		off := o * total
		for i, s := range op.Sizes {
			copy(y[off:off+s], get(in[i])[o*s:(o+1)*s])
			off += s
		}
	}
}

// SplitOp splits a tensor along an axis.
type SplitOp struct {
	Outer int
	Sizes []int // per output: its axis length times the inner size
}

func buildSplit(b *nodeBuild) (Op, error) {
	x, err := b.need(0)
	if err != nil {
		return nil, err
	}
	var split []int64
	if b.opset >= 13 {
		if b.has("split") {
			return nil, fmt.Errorf("split attribute is not allowed at opset %d (it is an input)", b.opset)
		}
		if split, err = b.constInts(1, "split"); err != nil {
			return nil, err
		}
	} else {
		split = b.attrInts("split")
	}
	numOutputs := int64(0)
	if b.has("num_outputs") {
		if numOutputs = b.attrInt("num_outputs", 0); numOutputs < 1 {
			return nil, fmt.Errorf("num_outputs %d must be positive", numOutputs)
		}
	}
	sizes, axis, err := shapeinfer.Split(toInt64s(x.shape), b.attrInt("axis", 0), split, len(b.outs), numOutputs)
	if err != nil {
		return nil, err
	}
	op := &SplitOp{Outer: sizeOf(x.shape[:axis])}
	inner := sizeOf(x.shape[axis+1:])
	for i, s := range sizes {
		shape := append([]int(nil), x.shape...)
		shape[axis] = int(s)
		b.setOut(i, shape, x.dtype)
		op.Sizes = append(op.Sizes, int(s)*inner)
	}
	return op, nil
}

// Forward splits.
func (op *SplitOp) Forward(c *Ctx, in, out []*Tensor) error {
	total := 0
	for _, s := range op.Sizes {
		total += s
	}
	for o := 0; o < op.Outer; o++ {
		off := o * total
		for i, s := range op.Sizes {
			if in[0].DType.IsFloat() {
				copy(out[i].F[o*s:(o+1)*s], in[0].F[off:off+s])
			} else {
				copy(out[i].I[o*s:(o+1)*s], in[0].I[off:off+s])
			}
			off += s
		}
	}
	return nil
}

// SliceOp copies a strided box of its input.
type SliceOp struct {
	outShape []int
	start    int   // input offset of the first element
	stride   []int // input stride per output axis (step * input stride)
	cnt      []int
}

func buildSlice(b *nodeBuild) (Op, error) {
	x, err := b.need(0)
	if err != nil {
		return nil, err
	}
	var starts, ends, axes, steps []int64
	if b.opset < 10 {
		starts, ends, axes = b.attrInts("starts"), b.attrInts("ends"), b.attrInts("axes")
	} else {
		if b.has("starts") || b.has("ends") || b.has("axes") {
			return nil, fmt.Errorf("starts/ends/axes attributes are not allowed at opset %d (they are inputs)", b.opset)
		}
		if starts, err = b.constInts(1, "starts"); err != nil {
			return nil, err
		}
		if ends, err = b.constInts(2, "ends"); err != nil {
			return nil, err
		}
		if axes, err = b.constInts(3, "axes"); err != nil {
			return nil, err
		}
		if steps, err = b.constInts(4, "steps"); err != nil {
			return nil, err
		}
	}
	box, err := shapeinfer.Slice(toInt64s(x.shape), starts, ends, axes, steps)
	if err != nil {
		return nil, err
	}
	rank := len(x.shape)
	shape := toInts(box.Shape)
	op := &SliceOp{outShape: shape, stride: make([]int, rank), cnt: make([]int, rank)}
	xs := stridesOf(x.shape)
	for i := range shape {
		if shape[i] > 0 {
			op.start += int(box.Start[i]) * xs[i]
		}
		op.stride[i] = clampInt64(box.Step[i]) * xs[i]
	}
	b.setOut(0, shape, x.dtype)
	if sizeOf(shape) > 0 {
		// iterate over the fewest, longest rows
		cs, strides := collapseDims(shape, op.stride)
		op.outShape, op.stride, op.cnt = cs, strides[0], make([]int, len(cs))
	}
	return op, nil
}

// Forward copies the slice.
func (op *SliceOp) Forward(c *Ctx, in, out []*Tensor) error {
	if out[0].DType.IsFloat() {
		gatherStrided(op.outShape, op.stride, op.cnt, op.start, in[0].F, out[0].F)
	} else {
		gatherStrided(op.outShape, op.stride, op.cnt, op.start, in[0].I, out[0].I)
	}
	return nil
}

// gatherStrided copies y[i0..] = x[start + sum i_d*stride_d] in output order.
func gatherStrided[T float32 | int64](shape, stride, cnt []int, start int, x, y []T) {
	rank := len(shape)
	if len(y) == 0 {
		return
	}
	if rank == 0 {
		y[0] = x[start]
		return
	}
	clear(cnt)
	last, ls := shape[rank-1], stride[rank-1]
	xo := start
	if rank >= 2 && ls == 1 && last <= 16 {
		// short contiguous rows (a channel shuffle moves 1-16 values at a
		// time): copy the rows of the next two axes per odometer step, the
		// longer of the two in the inner loop
		mid, ms := shape[rank-2], stride[rank-2]
		outer, os, odo := 1, 0, rank-2
		if rank >= 3 {
			outer, os, odo = shape[rank-3], stride[rank-3], rank-3
		}
		for yo := 0; yo < len(y); yo += outer * mid * last {
			yb := y[yo : yo+outer*mid*last]
			if outer > mid {
				for j := 0; j < mid; j++ {
					copyRows(yb[j*last:], x[xo+j*ms:], outer, mid*last, os, last)
				}
			} else {
				for i := 0; i < outer; i++ {
					copyRows(yb[i*mid*last:], x[xo+i*os:], mid, last, ms, last)
				}
			}
			xo = advance(cnt[:odo], shape[:odo], stride[:odo], xo)
		}
		return
	}
	for yo := 0; yo < len(y); yo += last {
		row := y[yo : yo+last]
		if ls == 1 {
			copy(row, x[xo:xo+last])
		} else {
			k := xo
			for j := range row {
				row[j] = x[k]
				k += ls
			}
		}
		xo = advance(cnt[:rank-1], shape[:rank-1], stride[:rank-1], xo)
	}
}

// copyRows copies rows rows of n values, row j from x[j*xs:] to y[j*ys:].
// Rows of 2, 4, 8 and 16 values move as arrays, without a call to memmove.
func copyRows[T float32 | int64](y, x []T, rows, ys, xs, n int) {
	if rows == 0 {
		return
	}
	y, x = y[:(rows-1)*ys+n], x[:(rows-1)*xs+n]
	switch n {
	case 2:
		for j, k := 0, 0; j+2 <= len(y) && k+2 <= len(x); j, k = j+ys, k+xs {
			*(*[2]T)(y[j : j+2]) = *(*[2]T)(x[k : k+2])
		}
	case 4:
		for j, k := 0, 0; j+4 <= len(y) && k+4 <= len(x); j, k = j+ys, k+xs {
			*(*[4]T)(y[j : j+4]) = *(*[4]T)(x[k : k+4])
		}
	case 8:
		for j, k := 0, 0; j+8 <= len(y) && k+8 <= len(x); j, k = j+ys, k+xs {
			*(*[8]T)(y[j : j+8]) = *(*[8]T)(x[k : k+8])
		}
	case 16:
		for j, k := 0, 0; j+16 <= len(y) && k+16 <= len(x); j, k = j+ys, k+xs {
			*(*[16]T)(y[j : j+16]) = *(*[16]T)(x[k : k+16])
		}
	default:
		for j, k := 0, 0; j < len(y); j, k = j+ys, k+xs {
			copy(y[j:j+n], x[k:k+n])
		}
	}
}

func buildShape(b *nodeBuild) (Op, error) {
	x, err := b.need(0)
	if err != nil {
		return nil, err
	}
	rank := int64(len(x.shape))
	lo, hi := shapeinfer.ShapeRange(rank, b.attrInt("start", 0), b.attrInt("end", rank))
	dims := toInt64s(x.shape[lo:hi])
	b.setConst(0, NewTensorI(dims, len(dims)))
	return nil, nil
}

// GatherOp picks slices along an axis by index.
type GatherOp struct {
	Outer, AxisLen, Inner int
}

func buildGather(b *nodeBuild) (Op, error) {
	x, err := b.need(0)
	if err != nil {
		return nil, err
	}
	idx, err := b.need(1)
	if err != nil {
		return nil, err
	}
	if idx.dtype.IsFloat() || idx.dtype == Bool {
		return nil, fmt.Errorf("indices must be int32 or int64, got %s", idx.dtype)
	}
	shape, axis, err := shapeinfer.Gather(toInt64s(x.shape), toInt64s(idx.shape), b.attrInt("axis", 0))
	if err != nil {
		return nil, err
	}
	b.setOut(0, toInts(shape), x.dtype)
	return &GatherOp{Outer: sizeOf(x.shape[:axis]), AxisLen: x.shape[axis], Inner: sizeOf(x.shape[axis+1:])}, nil
}

// Forward gathers; an index out of range is a run-time error.
func (op *GatherOp) Forward(c *Ctx, in, out []*Tensor) error {
	idx := in[1].I
	for _, i := range idx {
		if i < -int64(op.AxisLen) || i >= int64(op.AxisLen) {
			return fmt.Errorf("index %d out of range [-%d, %d)", i, op.AxisLen, op.AxisLen)
		}
	}
	if out[0].DType.IsFloat() {
		gather(op, idx, in[0].F, out[0].F)
	} else {
		gather(op, idx, in[0].I, out[0].I)
	}
	return nil
}

func gather[T float32 | int64](op *GatherOp, idx []int64, x, y []T) {
	n := op.Inner
	yo := 0
	for o := 0; o < op.Outer; o++ {
		base := o * op.AxisLen * n
		for _, i := range idx {
			if i < 0 {
				i += int64(op.AxisLen)
			}
			copy(y[yo:yo+n], x[base+int(i)*n:base+int(i)*n+n])
			yo += n
		}
	}
}

// CastOp converts between element types.
type CastOp struct{ To DType }

func buildCast(b *nodeBuild) (Op, error) {
	x, err := b.need(0)
	if err != nil {
		return nil, err
	}
	if !b.has("to") {
		return nil, fmt.Errorf("attribute to is required")
	}
	if b.attr("to").Type == onnxpb.AttributeProto_STRING {
		return nil, fmt.Errorf("string form of attribute to is not supported")
	}
	to, err := dtypeFromONNX(int32(b.attrInt("to", 0)))
	if err != nil {
		return nil, fmt.Errorf("cast to: %w", err)
	}
	b.setOut(0, x.shape, to)
	return &CastOp{To: to}, nil
}

// Forward converts.
func (op *CastOp) Forward(c *Ctx, in, out []*Tensor) error {
	x, y := in[0], out[0]
	switch {
	case x.DType.IsFloat() && op.To.IsFloat():
		copy(y.F, x.F)
	case x.DType.IsFloat():
		for i, v := range x.F {
			y.I[i] = castFloat(v, op.To)
		}
	case op.To.IsFloat():
		for i, v := range x.I {
			y.F[i] = float32(v)
		}
	default:
		for i, v := range x.I {
			y.I[i] = castInt(v, op.To)
		}
	}
	return nil
}

func castFloat(v float32, to DType) int64 {
	switch to {
	case Bool:
		if v != 0 {
			return 1
		}
		return 0
	case Int32:
		if v != v || v >= math.MaxInt32+1.0 || v < math.MinInt32 {
			return math.MinInt32
		}
		return int64(int32(v))
	}
	if v != v || v >= 9.223372e18 || v < -9.223372e18 {
		return math.MinInt64
	}
	return int64(v)
}

func castInt(v int64, to DType) int64 {
	switch to {
	case Bool:
		if v != 0 {
			return 1
		}
		return 0
	case Int32:
		return int64(int32(v))
	}
	return v
}

func buildConstant(b *nodeBuild) (Op, error) {
	if len(b.attrs) != 1 {
		names := make([]string, 0, len(b.attrs))
		for n := range b.attrs {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("Constant needs exactly one value attribute, has %v", names)
	}
	var t *Tensor
	switch {
	case b.has("value"):
		tp := b.attr("value").T
		if tp == nil {
			return nil, fmt.Errorf("attribute value holds no tensor")
		}
		var err error
		if t, err = TensorFromProto(tp); err != nil {
			return nil, err
		}
	case b.has("value_float"):
		t = &Tensor{Shape: []int{}, F: []float32{b.attrFloat("value_float", 0)}}
	case b.has("value_floats"):
		f := append([]float32{}, b.attr("value_floats").Floats...)
		t = &Tensor{Shape: []int{len(f)}, F: f}
	case b.has("value_int"):
		t = &Tensor{Shape: []int{}, DType: Int64, I: []int64{b.attrInt("value_int", 0)}}
	case b.has("value_ints"):
		v := append([]int64{}, b.attrInts("value_ints")...)
		t = &Tensor{Shape: []int{len(v)}, DType: Int64, I: v}
	}
	b.setConst(0, t)
	return nil, nil
}
