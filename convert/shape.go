package convert

import (
	"fmt"
	"math"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Value is what static shape inference knows about one tensor.
type Value struct {
	// Known is false when the shape could not be inferred.
	Known bool
	// Shape holds the dims; a dynamic dim has been replaced by 1 or by the
	// ShapeOptions override.
	Shape []int64
	// DType is the element type (0 when unknown).
	DType onnxio.DataType
	// Ints holds the contents of a small integer or boolean tensor whose
	// value is known statically (shape arithmetic); nil otherwise.
	Ints []int64
	// Floats holds the contents of a small floating-point tensor whose value
	// is known statically; nil otherwise.
	Floats []float64
}

// Elements returns the number of elements of a known shape.
func (v *Value) Elements() int64 {
	n := int64(1)
	for _, d := range v.Shape {
		n *= d
	}
	return n
}

func (v *Value) hasInts() bool   { return v != nil && v.Known && v.Ints != nil }
func (v *Value) hasFloats() bool { return v != nil && v.Known && v.Floats != nil }

// ShapeOptions controls InferShapes.
type ShapeOptions struct {
	// InputShapes replaces the shapes of graph inputs by name. The rank
	// must match the declared one; a dim the model fixes must agree. Dims
	// that are dynamic and not overridden are taken as 1.
	InputShapes map[string][]int64
}

// Shapes is the result of static shape inference.
type Shapes struct {
	// Values maps every tensor name to what is known about it.
	Values map[string]*Value
	// Warnings lists nodes whose outputs could not be inferred (unsupported
	// operators), each naming the node.
	Warnings []string
}

// Get returns the value called name, or an unknown Value.
func (s *Shapes) Get(name string) *Value {
	if v, ok := s.Values[name]; ok {
		return v
	}
	return &Value{}
}

// maxKnownInts and maxKnownFloats bound the tensors whose contents are
// tracked; shape arithmetic needs only a handful of elements.
const (
	maxKnownInts   = 1024
	maxKnownFloats = 64
)

// InferShapes computes the shape of every tensor in the main graph of m
// without running it. Integer tensors that are computed from shapes and
// constants (Shape, Gather, arithmetic, Cast, Unsqueeze, Concat, ...) are
// evaluated, so that Reshape and Slice targets built at run time resolve.
func InferShapes(m *onnxpb.ModelProto, opts ShapeOptions) (*Shapes, error) {
	g := m.GetGraph()
	if g == nil {
		return nil, fmt.Errorf("model has no graph")
	}
	inf := &inferer{
		opset: opsetVersion(m),
		s:     &Shapes{Values: map[string]*Value{}},
	}
	for _, t := range g.GetInitializer() {
		v, err := tensorValue(t)
		if err != nil {
			return nil, err
		}
		inf.s.Values[t.GetName()] = v
	}
	for name := range opts.InputShapes {
		found := false
		for _, in := range g.GetInput() {
			if in.GetName() == name {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("input shape given for %q, but the graph has no input of that name", name)
		}
	}
	for _, in := range g.GetInput() {
		if _, isInit := inf.s.Values[in.GetName()]; isInit {
			continue // an initializer listed as input (IR < 4) keeps its value
		}
		v, err := inputValue(in, opts.InputShapes[in.GetName()])
		if err != nil {
			return nil, err
		}
		inf.s.Values[in.GetName()] = v
	}
	for _, n := range g.GetNode() {
		if err := inf.node(n); err != nil {
			return nil, fmt.Errorf("shape inference at %s: %w", nodeLabel(n), err)
		}
	}
	return inf.s, nil
}

// inputValue turns a graph input declaration into a Value, applying the
// override.
func inputValue(in *onnxpb.ValueInfoProto, override []int64) (*Value, error) {
	tt := in.GetType().GetTensorType()
	if tt == nil || tt.GetShape() == nil {
		if override == nil {
			return &Value{DType: onnxio.DataType(tt.GetElemType())}, nil
		}
		return &Value{Known: true, Shape: append([]int64(nil), override...), DType: onnxio.DataType(tt.GetElemType())}, nil
	}
	dims := tt.GetShape().GetDim()
	if override != nil && len(override) != len(dims) {
		return nil, fmt.Errorf("input %q has rank %d, but the given input shape %v has rank %d", in.GetName(), len(dims), override, len(override))
	}
	shape := make([]int64, len(dims))
	for i, d := range dims {
		fixed := d.GetDimValue()
		switch {
		case override != nil && override[i] > 0:
			if fixed > 0 && fixed != override[i] {
				return nil, fmt.Errorf("input %q fixes dim %d at %d, but the given input shape says %d", in.GetName(), i, fixed, override[i])
			}
			shape[i] = override[i]
		case fixed > 0:
			shape[i] = fixed
		default:
			shape[i] = 1 // dynamic (batch) dim
		}
	}
	return &Value{Known: true, Shape: shape, DType: onnxio.DataType(tt.GetElemType())}, nil
}

// tensorValue turns a constant tensor into a Value, decoding small integer
// and float contents.
func tensorValue(t *onnxpb.TensorProto) (*Value, error) {
	v := &Value{Known: true, Shape: append([]int64{}, t.GetDims()...), DType: onnxio.DataType(t.GetDataType())}
	n, err := onnxio.NumElements(t)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	if onnxio.External(t) {
		return v, nil
	}
	if isFloatType(t.GetDataType()) {
		if n <= maxKnownFloats {
			f, err := onnxio.Float32s(t)
			if err != nil {
				return nil, err
			}
			v.Floats = make([]float64, len(f))
			for i, x := range f {
				v.Floats[i] = float64(x)
			}
		}
		return v, nil
	}
	if n <= maxKnownInts {
		if ints, err := onnxio.Int64s(t); err == nil {
			v.Ints = ints
		}
	}
	return v, nil
}

type inferer struct {
	opset int64
	s     *Shapes
}

// in returns the value of the node's i-th input; nil when the input is
// absent (optional input left empty).
func (inf *inferer) in(n *onnxpb.NodeProto, i int) *Value {
	name := input(n, i)
	if name == "" {
		return nil
	}
	return inf.s.Get(name)
}

func (inf *inferer) set(n *onnxpb.NodeProto, i int, v *Value) {
	if i < len(n.GetOutput()) && n.GetOutput()[i] != "" {
		inf.s.Values[n.GetOutput()[i]] = v
	}
}

func (inf *inferer) unknown(n *onnxpb.NodeProto) {
	for i := range n.GetOutput() {
		inf.set(n, i, &Value{})
	}
}

func shapeOf(shape []int64, dt onnxio.DataType) *Value {
	return &Value{Known: true, Shape: shape, DType: dt}
}

// normAxis maps a possibly negative axis into [0, rank).
func normAxis(axis int64, rank int) (int, error) {
	if axis < -int64(rank) || axis >= int64(rank) {
		return 0, fmt.Errorf("axis %d is out of range for rank %d", axis, rank)
	}
	if axis < 0 {
		axis += int64(rank)
	}
	return int(axis), nil
}

// axesInput reads axes from an attribute (older opsets) or from input i
// (newer opsets).
func (inf *inferer) axesInput(n *onnxpb.NodeProto, attrName string, i int) ([]int64, bool, error) {
	if a, ok := attrInts(n, attrName); ok {
		return a, true, nil
	}
	v := inf.in(n, i)
	if v == nil {
		return nil, false, nil
	}
	if !v.hasInts() {
		return nil, false, fmt.Errorf("input %d (%q) is not a constant", i, input(n, i))
	}
	return v.Ints, true, nil
}

// attrOrConstInts reads the integer list name from an attribute before
// opset since and from constant input i from opset since on, as Reshape's
// shape and Pad's pads moved from attributes to inputs.
func (inf *inferer) attrOrConstInts(n *onnxpb.NodeProto, since int64, name string, i int) ([]int64, error) {
	if inf.opset < since {
		v, _ := attrInts(n, name)
		return v, nil
	}
	v := inf.in(n, i)
	if !v.hasInts() {
		return nil, fmt.Errorf("%s input %q is not a constant and could not be evaluated", name, input(n, i))
	}
	return v.Ints, nil
}

var unaryOps = map[string]bool{
	"Relu": true, "Clip": true, "HardSigmoid": true, "HardSwish": true, "Sigmoid": true,
	"Softmax": true, "LogSoftmax": true, "Tanh": true, "LeakyRelu": true, "Elu": true,
	"Selu": true, "Erf": true, "Exp": true, "Log": true, "Sqrt": true, "Neg": true,
	"Abs": true, "Floor": true, "Ceil": true, "Reciprocal": true, "Softplus": true,
	"Softsign": true, "Gelu": true, "Mish": true, "BatchNormalization": true,
	"InstanceNormalization": true, "LRN": true, "Round": true, "Sign": true,
	"Identity": true, "Dropout": true, "Not": true, "Celu": true, "ThresholdedRelu": true,
	"Shrink": true, "LpNormalization": true, "MeanVarianceNormalization": true,
}

var binaryOps = map[string]bool{
	"Add": true, "Sub": true, "Mul": true, "Div": true, "Pow": true, "Mod": true,
	"Max": true, "Min": true, "Sum": true, "Mean": true, "Equal": true, "Less": true,
	"Greater": true, "LessOrEqual": true, "GreaterOrEqual": true, "And": true, "Or": true,
	"Xor": true, "PRelu": true, "Where": true,
}

func (inf *inferer) node(n *onnxpb.NodeProto) error {
	op := n.GetOpType()
	if !isDefaultDomain(n) {
		inf.s.Warnings = append(inf.s.Warnings, fmt.Sprintf("%s: operator domain %q is not supported; its outputs have unknown shapes", nodeLabel(n), n.GetDomain()))
		inf.unknown(n)
		return nil
	}
	if op == "Constant" {
		return inf.constant(n)
	}
	for i := range n.GetInput() {
		if v := inf.in(n, i); v != nil && !v.Known {
			inf.unknown(n) // unknown propagates
			return nil
		}
	}
	switch {
	case unaryOps[op]:
		return inf.unary(n)
	case binaryOps[op]:
		return inf.broadcastOp(n)
	}
	switch op {
	case "Conv":
		return inf.conv(n)
	case "MaxPool", "AveragePool", "LpPool":
		return inf.pool(n)
	case "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool":
		x := inf.in(n, 0)
		if len(x.Shape) < 3 {
			return fmt.Errorf("input has rank %d, want at least 3", len(x.Shape))
		}
		out := append([]int64{}, x.Shape...)
		for i := 2; i < len(out); i++ {
			out[i] = 1
		}
		inf.set(n, 0, shapeOf(out, x.DType))
	case "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare", "ReduceLogSum":
		return inf.reduce(n)
	case "Gemm":
		return inf.gemm(n)
	case "MatMul":
		return inf.matmul(n)
	case "Concat":
		return inf.concat(n)
	case "Split":
		return inf.split(n)
	case "Slice":
		return inf.slice(n)
	case "Reshape":
		return inf.reshape(n)
	case "Transpose":
		return inf.transpose(n)
	case "Flatten":
		x := inf.in(n, 0)
		axis, err := normAxis(attrInt(n, "axis", 1), len(x.Shape)+1)
		if err != nil {
			return err
		}
		a, b := int64(1), int64(1)
		for i, d := range x.Shape {
			if i < axis {
				a *= d
			} else {
				b *= d
			}
		}
		out := shapeOf([]int64{a, b}, x.DType)
		out.Ints, out.Floats = x.Ints, x.Floats
		inf.set(n, 0, out)
	case "Squeeze":
		return inf.squeeze(n)
	case "Unsqueeze":
		return inf.unsqueeze(n)
	case "Shape":
		x := inf.in(n, 0)
		r := int64(len(x.Shape))
		start, end := attrInt(n, "start", 0), attrInt(n, "end", r)
		start, end = clampIndex(start, r), clampIndex(end, r)
		vals := []int64{}
		if start < end {
			vals = append(vals, x.Shape[start:end]...)
		}
		v := shapeOf([]int64{int64(len(vals))}, onnxio.Int64)
		v.Ints = vals
		inf.set(n, 0, v)
	case "Size":
		x := inf.in(n, 0)
		v := shapeOf([]int64{}, onnxio.Int64)
		v.Ints = []int64{x.Elements()}
		inf.set(n, 0, v)
	case "Gather":
		return inf.gather(n)
	case "Cast":
		return inf.cast(n)
	case "ConstantOfShape":
		s := inf.in(n, 0)
		if !s.hasInts() {
			return fmt.Errorf("shape input %q is not a constant", input(n, 0))
		}
		dt := onnxio.Float
		if a := attr(n, "value"); a != nil && a.GetT() != nil {
			dt = onnxio.DataType(a.GetT().GetDataType())
		}
		inf.set(n, 0, shapeOf(append([]int64{}, s.Ints...), dt))
	case "Expand":
		x, s := inf.in(n, 0), inf.in(n, 1)
		if !s.hasInts() {
			return fmt.Errorf("shape input %q is not a constant", input(n, 1))
		}
		out, err := broadcastShapes(x.Shape, s.Ints)
		if err != nil {
			return err
		}
		inf.set(n, 0, shapeOf(out, x.DType))
	case "Pad":
		return inf.pad(n)
	default:
		inf.s.Warnings = append(inf.s.Warnings, fmt.Sprintf("%s: operator %s is not supported by static shape inference; its outputs have unknown shapes", nodeLabel(n), op))
		inf.unknown(n)
	}
	return nil
}

func clampIndex(i, r int64) int64 {
	if i < 0 {
		i += r
	}
	if i < 0 {
		return 0
	}
	if i > r {
		return r
	}
	return i
}

func (inf *inferer) constant(n *onnxpb.NodeProto) error {
	for _, a := range n.GetAttribute() {
		switch a.GetName() {
		case "value":
			if a.GetT() == nil {
				return fmt.Errorf("attribute value holds no tensor")
			}
			v, err := tensorValue(a.GetT())
			if err != nil {
				return err
			}
			inf.set(n, 0, v)
			return nil
		case "value_float":
			v := shapeOf([]int64{}, onnxio.Float)
			v.Floats = []float64{float64(a.GetF())}
			inf.set(n, 0, v)
			return nil
		case "value_floats":
			v := shapeOf([]int64{int64(len(a.GetFloats()))}, onnxio.Float)
			for _, f := range a.GetFloats() {
				v.Floats = append(v.Floats, float64(f))
			}
			if v.Floats == nil {
				v.Floats = []float64{}
			}
			inf.set(n, 0, v)
			return nil
		case "value_int":
			v := shapeOf([]int64{}, onnxio.Int64)
			v.Ints = []int64{a.GetI()}
			inf.set(n, 0, v)
			return nil
		case "value_ints":
			v := shapeOf([]int64{int64(len(a.GetInts()))}, onnxio.Int64)
			v.Ints = append([]int64{}, a.GetInts()...)
			inf.set(n, 0, v)
			return nil
		}
	}
	inf.s.Warnings = append(inf.s.Warnings, fmt.Sprintf("%s: unsupported Constant form; its output has an unknown shape", nodeLabel(n)))
	inf.unknown(n)
	return nil
}

func (inf *inferer) unary(n *onnxpb.NodeProto) error {
	x := inf.in(n, 0)
	if x == nil {
		return fmt.Errorf("missing input")
	}
	out := shapeOf(append([]int64{}, x.Shape...), x.DType)
	op := n.GetOpType()
	switch op {
	case "Identity":
		out.Ints, out.Floats = x.Ints, x.Floats
	case "Floor", "Ceil", "Neg", "Abs", "Relu", "Sqrt", "Round":
		if x.Floats != nil {
			out.Floats = make([]float64, len(x.Floats))
			for i, f := range x.Floats {
				out.Floats[i] = unaryFloat(op, f)
			}
		}
		if x.Ints != nil {
			out.Ints = make([]int64, len(x.Ints))
			for i, v := range x.Ints {
				out.Ints[i] = unaryInt(op, v)
			}
		}
	}
	if op == "Not" {
		out.DType = onnxio.Bool
	}
	inf.set(n, 0, out)
	if op == "Dropout" && len(n.GetOutput()) > 1 {
		inf.set(n, 1, shapeOf(append([]int64{}, x.Shape...), onnxio.Bool))
	}
	if op == "BatchNormalization" {
		for i := 1; i < len(n.GetOutput()); i++ {
			c := int64(1)
			if len(x.Shape) > 1 {
				c = x.Shape[1]
			}
			inf.set(n, i, shapeOf([]int64{c}, x.DType))
		}
	}
	return nil
}

func unaryFloat(op string, f float64) float64 {
	switch op {
	case "Floor":
		return math.Floor(f)
	case "Ceil":
		return math.Ceil(f)
	case "Neg":
		return -f
	case "Abs":
		return math.Abs(f)
	case "Relu":
		return math.Max(f, 0)
	case "Sqrt":
		return math.Sqrt(f)
	case "Round":
		return math.RoundToEven(f)
	}
	return f
}

func unaryInt(op string, v int64) int64 {
	switch op {
	case "Neg":
		return -v
	case "Abs":
		if v < 0 {
			return -v
		}
	case "Relu":
		if v < 0 {
			return 0
		}
	case "Sqrt":
		return int64(math.Sqrt(float64(v)))
	}
	return v
}

// broadcastShapes applies multidirectional (numpy) broadcasting.
func broadcastShapes(a, b []int64) ([]int64, error) {
	r := len(a)
	if len(b) > r {
		r = len(b)
	}
	out := make([]int64, r)
	for i := 0; i < r; i++ {
		da, db := int64(1), int64(1)
		if j := len(a) - r + i; j >= 0 {
			da = a[j]
		}
		if j := len(b) - r + i; j >= 0 {
			db = b[j]
		}
		switch {
		case da == db:
			out[i] = da
		case da == 1:
			out[i] = db
		case db == 1:
			out[i] = da
		default:
			return nil, fmt.Errorf("shapes %v and %v do not broadcast", a, b)
		}
	}
	return out, nil
}

// broadcastIndex maps flat index i of shape out to the flat index of a
// tensor of shape in broadcast to out.
func broadcastIndex(i int64, out, in []int64) int64 {
	idx, stride := int64(0), int64(1)
	for d := len(out) - 1; d >= 0; d-- {
		c := i % out[d]
		i /= out[d]
		j := d - (len(out) - len(in))
		if j < 0 {
			continue
		}
		if in[j] != 1 {
			idx += c * stride
		}
		stride *= in[j]
	}
	return idx
}

func (inf *inferer) broadcastOp(n *onnxpb.NodeProto) error {
	op := n.GetOpType()
	var ins []*Value
	for i := range n.GetInput() {
		if v := inf.in(n, i); v != nil {
			ins = append(ins, v)
		}
	}
	if len(ins) == 0 {
		return fmt.Errorf("no inputs")
	}
	shape := ins[0].Shape
	for _, v := range ins[1:] {
		s, err := broadcastShapes(shape, v.Shape)
		if err != nil {
			return err
		}
		shape = s
	}
	dt := ins[0].DType
	switch op {
	case "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor":
		dt = onnxio.Bool
	case "Where":
		dt = ins[1].DType
	}
	out := shapeOf(shape, dt)
	if len(ins) == 2 && op != "Where" {
		count := out.Elements()
		a, b := ins[0], ins[1]
		switch {
		case a.hasInts() && b.hasInts() && count <= maxKnownInts:
			res := make([]int64, count)
			for i := range res {
				x := a.Ints[broadcastIndex(int64(i), shape, a.Shape)]
				y := b.Ints[broadcastIndex(int64(i), shape, b.Shape)]
				r, err := binaryInt(op, x, y)
				if err != nil {
					return err
				}
				res[i] = r
			}
			out.Ints = res
		case a.hasFloats() && b.hasFloats() && count <= maxKnownFloats:
			res := make([]float64, count)
			for i := range res {
				x := a.Floats[broadcastIndex(int64(i), shape, a.Shape)]
				y := b.Floats[broadcastIndex(int64(i), shape, b.Shape)]
				res[i] = binaryFloat(op, x, y)
			}
			if dt == onnxio.Bool {
				out.Ints = make([]int64, count)
				for i, r := range res {
					out.Ints[i] = int64(r)
				}
			} else {
				out.Floats = res
			}
		}
	}
	inf.set(n, 0, out)
	return nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func binaryInt(op string, x, y int64) (int64, error) {
	switch op {
	case "Add", "Sum":
		return x + y, nil
	case "Sub":
		return x - y, nil
	case "Mul":
		return x * y, nil
	case "Div":
		if y == 0 {
			return 0, fmt.Errorf("integer division by zero")
		}
		return x / y, nil // truncation, as ONNX Runtime does
	case "Mod":
		if y == 0 {
			return 0, fmt.Errorf("integer modulo by zero")
		}
		r := x % y
		if r != 0 && (r < 0) != (y < 0) {
			r += y
		}
		return r, nil
	case "Max":
		return max(x, y), nil
	case "Min":
		return min(x, y), nil
	case "Mean":
		return (x + y) / 2, nil
	case "Pow":
		return int64(math.Pow(float64(x), float64(y))), nil
	case "Equal":
		return b2i(x == y), nil
	case "Less":
		return b2i(x < y), nil
	case "Greater":
		return b2i(x > y), nil
	case "LessOrEqual":
		return b2i(x <= y), nil
	case "GreaterOrEqual":
		return b2i(x >= y), nil
	case "And":
		return b2i(x != 0 && y != 0), nil
	case "Or":
		return b2i(x != 0 || y != 0), nil
	case "Xor":
		return b2i((x != 0) != (y != 0)), nil
	case "PRelu":
		if x < 0 {
			return x * y, nil
		}
		return x, nil
	}
	return 0, fmt.Errorf("operator %s on integers is not supported", op)
}

func binaryFloat(op string, x, y float64) float64 {
	switch op {
	case "Add", "Sum":
		return x + y
	case "Sub":
		return x - y
	case "Mul":
		return x * y
	case "Div":
		return x / y
	case "Mod":
		return math.Mod(x, y)
	case "Max":
		return math.Max(x, y)
	case "Min":
		return math.Min(x, y)
	case "Mean":
		return (x + y) / 2
	case "Pow":
		return math.Pow(x, y)
	case "Equal":
		return float64(b2i(x == y))
	case "Less":
		return float64(b2i(x < y))
	case "Greater":
		return float64(b2i(x > y))
	case "LessOrEqual":
		return float64(b2i(x <= y))
	case "GreaterOrEqual":
		return float64(b2i(x >= y))
	case "PRelu":
		if x < 0 {
			return x * y
		}
	}
	return x
}

// spatialParams reads kernel, strides, dilations and the effective pads of
// a Conv or pooling node over the spatial dims of x.
func spatialOut(n *onnxpb.NodeProto, in, kernel []int64, ceil bool) ([]int64, error) {
	k := len(in)
	strides, ok := attrInts(n, "strides")
	if !ok {
		strides = ones(k)
	}
	dil, ok := attrInts(n, "dilations")
	if !ok {
		dil = ones(k)
	}
	pads, ok := attrInts(n, "pads")
	if !ok {
		pads = make([]int64, 2*k)
	}
	if len(strides) != k || len(dil) != k || len(pads) != 2*k || len(kernel) != k {
		return nil, fmt.Errorf("kernel %v, strides %v, dilations %v or pads %v do not match %d spatial dims", kernel, strides, dil, pads, k)
	}
	autoPad := attrString(n, "auto_pad", "NOTSET")
	out := make([]int64, k)
	for i := 0; i < k; i++ {
		if strides[i] <= 0 || dil[i] <= 0 || kernel[i] <= 0 {
			return nil, fmt.Errorf("kernel %v, strides %v and dilations %v must be positive", kernel, strides, dil)
		}
		ek := (kernel[i]-1)*dil[i] + 1
		switch autoPad {
		case "SAME_UPPER", "SAME_LOWER":
			out[i] = (in[i] + strides[i] - 1) / strides[i]
		case "VALID":
			out[i] = (in[i]-ek)/strides[i] + 1
		case "NOTSET", "":
			span := in[i] + pads[i] + pads[i+k] - ek
			if span < 0 {
				return nil, fmt.Errorf("kernel extent %d exceeds padded input %d", ek, in[i]+pads[i]+pads[i+k])
			}
			if ceil {
				o := (span+strides[i]-1)/strides[i] + 1
				// The last window must start inside the input or its
				// leading pad.
				if (o-1)*strides[i] >= in[i]+pads[i] {
					o--
				}
				out[i] = o
			} else {
				out[i] = span/strides[i] + 1
			}
		default:
			return nil, fmt.Errorf("auto_pad %q is not supported", autoPad)
		}
		if out[i] <= 0 {
			return nil, fmt.Errorf("output size %d along spatial dim %d is not positive", out[i], i)
		}
	}
	return out, nil
}

func ones(k int) []int64 {
	s := make([]int64, k)
	for i := range s {
		s[i] = 1
	}
	return s
}

func (inf *inferer) conv(n *onnxpb.NodeProto) error {
	x, w := inf.in(n, 0), inf.in(n, 1)
	if x == nil || w == nil {
		return fmt.Errorf("needs inputs X and W")
	}
	if len(x.Shape) < 3 || len(w.Shape) != len(x.Shape) {
		return fmt.Errorf("input shape %v and weight shape %v do not fit a convolution", x.Shape, w.Shape)
	}
	group := attrInt(n, "group", 1)
	if group <= 0 || x.Shape[1]%group != 0 || w.Shape[1]*group != x.Shape[1] {
		return fmt.Errorf("input has %d channels, weight %v with group %d expects %d", x.Shape[1], w.Shape, group, w.Shape[1]*group)
	}
	kernel, ok := attrInts(n, "kernel_shape")
	if !ok {
		kernel = w.Shape[2:]
	}
	sp, err := spatialOut(n, x.Shape[2:], kernel, false)
	if err != nil {
		return err
	}
	inf.set(n, 0, shapeOf(append([]int64{x.Shape[0], w.Shape[0]}, sp...), x.DType))
	return nil
}

func (inf *inferer) pool(n *onnxpb.NodeProto) error {
	x := inf.in(n, 0)
	if len(x.Shape) < 3 {
		return fmt.Errorf("input has rank %d, want at least 3", len(x.Shape))
	}
	kernel, ok := attrInts(n, "kernel_shape")
	if !ok {
		return fmt.Errorf("attribute kernel_shape is missing")
	}
	sp, err := spatialOut(n, x.Shape[2:], kernel, attrInt(n, "ceil_mode", 0) != 0)
	if err != nil {
		return err
	}
	out := shapeOf(append([]int64{x.Shape[0], x.Shape[1]}, sp...), x.DType)
	inf.set(n, 0, out)
	if len(n.GetOutput()) > 1 { // MaxPool indices
		inf.set(n, 1, shapeOf(append([]int64{}, out.Shape...), onnxio.Int64))
	}
	return nil
}

func (inf *inferer) reduce(n *onnxpb.NodeProto) error {
	x := inf.in(n, 0)
	axes, ok, err := inf.axesInput(n, "axes", 1)
	if err != nil {
		return err
	}
	keep := attrInt(n, "keepdims", 1) != 0
	r := len(x.Shape)
	reduced := make([]bool, r)
	if !ok || len(axes) == 0 {
		if attrInt(n, "noop_with_empty_axes", 0) != 0 {
			inf.set(n, 0, shapeOf(append([]int64{}, x.Shape...), x.DType))
			return nil
		}
		for i := range reduced {
			reduced[i] = true
		}
	}
	for _, a := range axes {
		ax, err := normAxis(a, r)
		if err != nil {
			return err
		}
		reduced[ax] = true
	}
	out := []int64{}
	for i, d := range x.Shape {
		switch {
		case !reduced[i]:
			out = append(out, d)
		case keep:
			out = append(out, 1)
		}
	}
	inf.set(n, 0, shapeOf(out, x.DType))
	return nil
}

func (inf *inferer) gemm(n *onnxpb.NodeProto) error {
	a, b := inf.in(n, 0), inf.in(n, 1)
	if a == nil || b == nil || len(a.Shape) != 2 || len(b.Shape) != 2 {
		return fmt.Errorf("needs two 2-D inputs")
	}
	m, k := a.Shape[0], a.Shape[1]
	if attrInt(n, "transA", 0) != 0 {
		m, k = k, m
	}
	k2, nn := b.Shape[0], b.Shape[1]
	if attrInt(n, "transB", 0) != 0 {
		k2, nn = nn, k2
	}
	if k != k2 {
		return fmt.Errorf("inner dims differ: A %v, B %v", a.Shape, b.Shape)
	}
	inf.set(n, 0, shapeOf([]int64{m, nn}, a.DType))
	return nil
}

// matmulShape returns numpy matmul's output shape.
func matmulShape(a, b []int64) ([]int64, error) {
	if len(a) == 0 || len(b) == 0 {
		return nil, fmt.Errorf("MatMul of a scalar")
	}
	a1, b1 := len(a) == 1, len(b) == 1
	if a1 {
		a = []int64{1, a[0]}
	}
	if b1 {
		b = []int64{b[0], 1}
	}
	if a[len(a)-1] != b[len(b)-2] {
		return nil, fmt.Errorf("inner dims differ: %v and %v", a, b)
	}
	batch, err := broadcastShapes(a[:len(a)-2], b[:len(b)-2])
	if err != nil {
		return nil, err
	}
	out := append(batch, a[len(a)-2], b[len(b)-1])
	if a1 {
		out = append(out[:len(out)-2], out[len(out)-1])
	}
	if b1 {
		out = out[:len(out)-1]
	}
	return out, nil
}

func (inf *inferer) matmul(n *onnxpb.NodeProto) error {
	a, b := inf.in(n, 0), inf.in(n, 1)
	if a == nil || b == nil {
		return fmt.Errorf("needs two inputs")
	}
	out, err := matmulShape(a.Shape, b.Shape)
	if err != nil {
		return err
	}
	inf.set(n, 0, shapeOf(out, a.DType))
	return nil
}

func (inf *inferer) concat(n *onnxpb.NodeProto) error {
	var ins []*Value
	for i := range n.GetInput() {
		if v := inf.in(n, i); v != nil {
			ins = append(ins, v)
		}
	}
	if len(ins) == 0 {
		return fmt.Errorf("no inputs")
	}
	r := len(ins[0].Shape)
	axis, err := normAxis(attrInt(n, "axis", 0), r)
	if err != nil {
		return err
	}
	out := append([]int64{}, ins[0].Shape...)
	out[axis] = 0
	allInts := true
	for _, v := range ins {
		if len(v.Shape) != r {
			return fmt.Errorf("inputs have ranks %d and %d", r, len(v.Shape))
		}
		for d := range v.Shape {
			if d != axis && v.Shape[d] != out[d] {
				return fmt.Errorf("input shapes %v and %v differ off axis %d", ins[0].Shape, v.Shape, axis)
			}
		}
		out[axis] += v.Shape[axis]
		allInts = allInts && v.hasInts()
	}
	res := shapeOf(out, ins[0].DType)
	if allInts && r == 1 {
		res.Ints = []int64{}
		for _, v := range ins {
			res.Ints = append(res.Ints, v.Ints...)
		}
	}
	inf.set(n, 0, res)
	return nil
}

func (inf *inferer) split(n *onnxpb.NodeProto) error {
	x := inf.in(n, 0)
	axis, err := normAxis(attrInt(n, "axis", 0), len(x.Shape))
	if err != nil {
		return err
	}
	parts, ok, err := inf.axesInput(n, "split", 1)
	if err != nil {
		return err
	}
	outs := len(n.GetOutput())
	dim := x.Shape[axis]
	if !ok {
		k := int64(outs)
		if no := attrInt(n, "num_outputs", 0); no > 0 {
			k = no
		}
		if k <= 0 {
			return fmt.Errorf("no outputs")
		}
		chunk := (dim + k - 1) / k
		parts = make([]int64, k)
		for i := range parts {
			parts[i] = min(chunk, dim-int64(i)*chunk)
			if parts[i] < 0 {
				parts[i] = 0
			}
		}
	}
	if len(parts) != outs {
		return fmt.Errorf("%d split sizes for %d outputs", len(parts), outs)
	}
	sum := int64(0)
	for _, p := range parts {
		sum += p
	}
	if sum != dim {
		return fmt.Errorf("split sizes %v do not add up to dim %d of %v", parts, dim, x.Shape)
	}
	start := int64(0)
	for i, p := range parts {
		s := append([]int64{}, x.Shape...)
		s[axis] = p
		v := shapeOf(s, x.DType)
		if x.hasInts() && len(x.Shape) == 1 {
			v.Ints = append([]int64{}, x.Ints[start:start+p]...)
		}
		inf.set(n, i, v)
		start += p
	}
	return nil
}

func (inf *inferer) slice(n *onnxpb.NodeProto) error {
	x := inf.in(n, 0)
	r := len(x.Shape)
	var starts, ends, axes, steps []int64
	if inf.opset < 10 {
		starts, _ = attrInts(n, "starts")
		ends, _ = attrInts(n, "ends")
		axes, _ = attrInts(n, "axes")
	} else {
		for i, dst := range []*[]int64{&starts, &ends, &axes, &steps} {
			v := inf.in(n, i+1)
			if v == nil {
				continue
			}
			if !v.hasInts() {
				return fmt.Errorf("input %d (%q) is not a constant", i+1, input(n, i+1))
			}
			*dst = v.Ints
		}
	}
	if len(starts) != len(ends) {
		return fmt.Errorf("%d starts but %d ends", len(starts), len(ends))
	}
	if axes == nil {
		for i := range starts {
			axes = append(axes, int64(i))
		}
	}
	if steps == nil {
		steps = ones(len(starts))
	}
	if len(axes) != len(starts) || len(steps) != len(starts) {
		return fmt.Errorf("starts, ends, axes and steps have different lengths")
	}
	out := append([]int64{}, x.Shape...)
	begin := make([]int64, r)
	step := ones(r)
	for i, a := range axes {
		ax, err := normAxis(a, r)
		if err != nil {
			return err
		}
		d, st := x.Shape[ax], steps[i]
		if st == 0 {
			return fmt.Errorf("slice step is 0")
		}
		s, e := starts[i], ends[i]
		if s < 0 {
			s += d
		}
		if e < 0 {
			e += d
		}
		if st > 0 {
			s, e = clampRange(s, 0, d), clampRange(e, 0, d)
			out[ax] = max(0, (e-s+st-1)/st)
		} else {
			s, e = clampRange(s, -1, d-1), clampRange(e, -1, d-1)
			out[ax] = max(0, (s-e-st-1)/(-st))
		}
		begin[ax], step[ax] = s, st
	}
	v := shapeOf(out, x.DType)
	if r == 1 && x.hasInts() {
		v.Ints = make([]int64, out[0])
		for i := range v.Ints {
			v.Ints[i] = x.Ints[begin[0]+int64(i)*step[0]]
		}
	}
	inf.set(n, 0, v)
	return nil
}

func clampRange(v, lo, hi int64) int64 {
	return max(lo, min(v, hi))
}

func (inf *inferer) reshape(n *onnxpb.NodeProto) error {
	x := inf.in(n, 0)
	target, err := inf.attrOrConstInts(n, 5, "shape", 1)
	if err != nil {
		return err
	}
	allowZero := attrInt(n, "allowzero", 0) != 0
	out := make([]int64, len(target))
	infer := -1
	known := int64(1)
	for i, d := range target {
		switch {
		case d == 0 && !allowZero:
			if i >= len(x.Shape) {
				return fmt.Errorf("target %v copies dim %d of %v, which does not exist", target, i, x.Shape)
			}
			out[i] = x.Shape[i]
		case d == -1:
			if infer >= 0 {
				return fmt.Errorf("target %v has more than one -1", target)
			}
			infer = i
			continue
		case d < 0:
			return fmt.Errorf("target %v has a negative dim", target)
		default:
			out[i] = d
		}
		known *= out[i]
	}
	total := x.Elements()
	if infer >= 0 {
		if known == 0 || total%known != 0 {
			return fmt.Errorf("cannot reshape %v to %v", x.Shape, target)
		}
		out[infer] = total / known
	} else if known != total {
		return fmt.Errorf("cannot reshape %v (%d elements) to %v", x.Shape, total, target)
	}
	v := shapeOf(out, x.DType)
	v.Ints, v.Floats = x.Ints, x.Floats
	inf.set(n, 0, v)
	return nil
}

func (inf *inferer) transpose(n *onnxpb.NodeProto) error {
	x := inf.in(n, 0)
	r := len(x.Shape)
	perm, ok := attrInts(n, "perm")
	if !ok {
		for i := r - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	if len(perm) != r {
		return fmt.Errorf("perm %v does not fit rank %d", perm, r)
	}
	out := make([]int64, r)
	seen := make([]bool, r)
	for i, p := range perm {
		ax, err := normAxis(p, r)
		if err != nil || seen[ax] {
			return fmt.Errorf("perm %v is not a permutation of rank %d", perm, r)
		}
		seen[ax] = true
		out[i] = x.Shape[ax]
	}
	inf.set(n, 0, shapeOf(out, x.DType))
	return nil
}

func (inf *inferer) squeeze(n *onnxpb.NodeProto) error {
	x := inf.in(n, 0)
	axes, ok, err := inf.axesInput(n, "axes", 1)
	if err != nil {
		return err
	}
	r := len(x.Shape)
	drop := make([]bool, r)
	if !ok {
		for i, d := range x.Shape {
			drop[i] = d == 1
		}
	}
	for _, a := range axes {
		ax, err := normAxis(a, r)
		if err != nil {
			return err
		}
		if x.Shape[ax] != 1 {
			return fmt.Errorf("cannot squeeze dim %d of size %d", ax, x.Shape[ax])
		}
		drop[ax] = true
	}
	out := []int64{}
	for i, d := range x.Shape {
		if !drop[i] {
			out = append(out, d)
		}
	}
	v := shapeOf(out, x.DType)
	v.Ints, v.Floats = x.Ints, x.Floats
	inf.set(n, 0, v)
	return nil
}

func (inf *inferer) unsqueeze(n *onnxpb.NodeProto) error {
	x := inf.in(n, 0)
	axes, ok, err := inf.axesInput(n, "axes", 1)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("axes are missing")
	}
	r := len(x.Shape) + len(axes)
	ins := make([]bool, r)
	for _, a := range axes {
		ax, err := normAxis(a, r)
		if err != nil {
			return err
		}
		if ins[ax] {
			return fmt.Errorf("axis %d repeated", ax)
		}
		ins[ax] = true
	}
	out := make([]int64, 0, r)
	j := 0
	for i := 0; i < r; i++ {
		if ins[i] {
			out = append(out, 1)
		} else {
			out = append(out, x.Shape[j])
			j++
		}
	}
	v := shapeOf(out, x.DType)
	v.Ints, v.Floats = x.Ints, x.Floats
	inf.set(n, 0, v)
	return nil
}

func (inf *inferer) gather(n *onnxpb.NodeProto) error {
	x, idx := inf.in(n, 0), inf.in(n, 1)
	if x == nil || idx == nil {
		return fmt.Errorf("needs data and indices")
	}
	if len(x.Shape) == 0 {
		return fmt.Errorf("data is a scalar")
	}
	axis, err := normAxis(attrInt(n, "axis", 0), len(x.Shape))
	if err != nil {
		return err
	}
	out := append([]int64{}, x.Shape[:axis]...)
	out = append(out, idx.Shape...)
	out = append(out, x.Shape[axis+1:]...)
	v := shapeOf(out, x.DType)
	if len(x.Shape) == 1 && idx.hasInts() && (x.hasInts() || x.hasFloats()) {
		d := x.Shape[0]
		for _, i := range idx.Ints {
			if i < 0 {
				i += d
			}
			if i < 0 || i >= d {
				return fmt.Errorf("index %d is out of range for dim %d", i, d)
			}
			if x.Ints != nil {
				v.Ints = append(v.Ints, x.Ints[i])
			} else {
				v.Floats = append(v.Floats, x.Floats[i])
			}
		}
		if x.Ints != nil && v.Ints == nil {
			v.Ints = []int64{}
		}
	}
	inf.set(n, 0, v)
	return nil
}

func (inf *inferer) cast(n *onnxpb.NodeProto) error {
	x := inf.in(n, 0)
	to := onnxio.DataType(attrInt(n, "to", 0))
	v := shapeOf(append([]int64{}, x.Shape...), to)
	toFloat := isFloatType(int32(to))
	switch {
	case x.Ints != nil && toFloat:
		v.Floats = make([]float64, len(x.Ints))
		for i, a := range x.Ints {
			v.Floats[i] = float64(a)
		}
	case x.Ints != nil:
		v.Ints = append([]int64{}, x.Ints...)
		if to == onnxio.Bool {
			for i, a := range v.Ints {
				v.Ints[i] = b2i(a != 0)
			}
		}
	case x.Floats != nil && toFloat:
		v.Floats = append([]float64{}, x.Floats...)
	case x.Floats != nil:
		v.Ints = make([]int64, len(x.Floats))
		for i, f := range x.Floats {
			if to == onnxio.Bool {
				v.Ints[i] = b2i(f != 0)
			} else {
				v.Ints[i] = int64(math.Trunc(f))
			}
		}
	}
	inf.set(n, 0, v)
	return nil
}

func (inf *inferer) pad(n *onnxpb.NodeProto) error {
	x := inf.in(n, 0)
	pads, err := inf.attrOrConstInts(n, 11, "pads", 1)
	if err != nil {
		return err
	}
	r := len(x.Shape)
	axes := make([]int64, r)
	for i := range axes {
		axes[i] = int64(i)
	}
	if a := inf.in(n, 3); a != nil {
		if !a.hasInts() {
			return fmt.Errorf("axes input %q is not a constant", input(n, 3))
		}
		axes = a.Ints
	}
	k := len(axes)
	if len(pads) != 2*k {
		return fmt.Errorf("pads %v do not fit %d axes", pads, k)
	}
	out := append([]int64{}, x.Shape...)
	for i, a := range axes {
		ax, err := normAxis(a, r)
		if err != nil {
			return err
		}
		out[ax] += pads[i] + pads[i+k]
	}
	inf.set(n, 0, shapeOf(out, x.DType))
	return nil
}
