package shapeinfer

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Value is what static shape inference knows about one tensor.
type Value struct {
	// Known is false when the shape could not be inferred.
	Known bool
	// Shape holds the dims; a dynamic dim has been replaced by 1 or by the
	// Options override.
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
func (v *Value) Elements() int64 { return Size(v.Shape) }

func (v *Value) hasInts() bool   { return v != nil && v.Known && v.Ints != nil }
func (v *Value) hasFloats() bool { return v != nil && v.Known && v.Floats != nil }

// Options controls Infer.
type Options struct {
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

// Infer computes the shape of every tensor in the main graph of m without
// running it. Integer tensors that are computed from shapes and constants
// (Shape, Gather, arithmetic, Cast, Unsqueeze, Concat, ...) are evaluated,
// so that Reshape and Slice targets built at run time resolve. An operator
// it does not know gives unknown outputs and a warning; an operator whose
// inputs violate the specification is an error naming the node.
func Infer(m *onnxpb.ModelProto, opts Options) (*Shapes, error) {
	g := m.GetGraph()
	if g == nil {
		return nil, fmt.Errorf("model has no graph")
	}
	inf := &inferer{
		opset: onnxio.OpsetVersion(m),
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
			return nil, fmt.Errorf("shape inference at %s: %w", onnxio.NodeLabel(n), err)
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
		// a dim_value (even 0) fixes the dim; a dim_param or nothing leaves
		// it dynamic
		_, isFixed := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue)
		fixed := d.GetDimValue()
		isFixed = isFixed && fixed >= 0
		switch {
		case override != nil && override[i] > 0:
			if isFixed && fixed != override[i] {
				return nil, fmt.Errorf("input %q fixes dim %d at %d, but the given input shape says %d", in.GetName(), i, fixed, override[i])
			}
			shape[i] = override[i]
		case isFixed:
			shape[i] = fixed
		default:
			shape[i] = 1 // dynamic (batch) dim
		}
	}
	return &Value{Known: true, Shape: shape, DType: onnxio.DataType(tt.GetElemType())}, nil
}

type inferer struct {
	opset int64
	s     *Shapes
}

// in returns the value of the node's i-th input; nil when the input is
// absent (optional input left empty).
func (inf *inferer) in(n *onnxpb.NodeProto, i int) *Value {
	name := onnxio.Input(n, i)
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

func (inf *inferer) warn(n *onnxpb.NodeProto, format string, args ...any) {
	inf.s.Warnings = append(inf.s.Warnings, onnxio.NodeLabel(n)+": "+fmt.Sprintf(format, args...))
	inf.unknown(n)
}

func shapeOf(shape []int64, dt onnxio.DataType) *Value {
	return &Value{Known: true, Shape: shape, DType: dt}
}

// constInts returns the known integer contents of input i: (nil, false)
// when the input is absent, an error when it is present but not known.
func (inf *inferer) constInts(n *onnxpb.NodeProto, i int, what string) ([]int64, bool, error) {
	v := inf.in(n, i)
	if v == nil {
		return nil, false, nil
	}
	if !v.hasInts() {
		return nil, false, fmt.Errorf("%s input %q is not a constant and could not be evaluated", what, onnxio.Input(n, i))
	}
	return v.Ints, true, nil
}

// axesInput reads an integer list from an attribute (older opsets) or
// from input i (newer opsets).
func (inf *inferer) axesInput(n *onnxpb.NodeProto, attrName string, i int) ([]int64, bool, error) {
	if a, ok := onnxio.AttrInts(n, attrName); ok {
		return a, true, nil
	}
	return inf.constInts(n, i, attrName)
}

// attrOrConstInts reads the integer list name from an attribute before
// opset since and from constant input i from opset since on, as Reshape's
// shape and Pad's pads moved from attributes to inputs.
func (inf *inferer) attrOrConstInts(n *onnxpb.NodeProto, since int64, name string, i int) ([]int64, error) {
	if inf.opset < since {
		v, _ := onnxio.AttrInts(n, name)
		return v, nil
	}
	v, ok, err := inf.constInts(n, i, name)
	if err == nil && !ok {
		err = fmt.Errorf("%s input is missing", name)
	}
	return v, err
}

func (inf *inferer) node(n *onnxpb.NodeProto) error {
	op := n.GetOpType()
	if !onnxio.IsDefaultDomain(n) {
		inf.warn(n, "operator domain %q is not supported; its outputs have unknown shapes", n.GetDomain())
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
	infer, ok := nodeRules[op]
	if !ok {
		inf.warn(n, "operator %s is not supported by static shape inference; its outputs have unknown shapes", op)
		return nil
	}
	return infer(inf, n)
}

// nodeRules maps the operators other than the unary and broadcasting
// element-wise ones to their inference.
var nodeRules = map[string]func(*inferer, *onnxpb.NodeProto) error{
	"Conv":              (*inferer).conv,
	"MaxPool":           (*inferer).pool,
	"AveragePool":       (*inferer).pool,
	"LpPool":            (*inferer).pool,
	"GlobalAveragePool": (*inferer).globalPool,
	"GlobalMaxPool":     (*inferer).globalPool,
	"GlobalLpPool":      (*inferer).globalPool,
	"ReduceMean":        (*inferer).reduce,
	"ReduceSum":         (*inferer).reduce,
	"ReduceMax":         (*inferer).reduce,
	"ReduceMin":         (*inferer).reduce,
	"ReduceProd":        (*inferer).reduce,
	"ReduceL1":          (*inferer).reduce,
	"ReduceL2":          (*inferer).reduce,
	"ReduceLogSumExp":   (*inferer).reduce,
	"ReduceSumSquare":   (*inferer).reduce,
	"ReduceLogSum":      (*inferer).reduce,
	"Gemm":              (*inferer).gemm,
	"MatMul":            (*inferer).matmul,
	"Concat":            (*inferer).concat,
	"Split":             (*inferer).split,
	"Pad":               (*inferer).pad,
	"Slice":             (*inferer).slice,
	"Gather":            (*inferer).gather,
	"Shape":             (*inferer).shape,
	"Size":              (*inferer).size,
	"Reshape":           (*inferer).reshape,
	"Transpose":         (*inferer).transpose,
	"Flatten":           (*inferer).flatten,
	"Squeeze":           (*inferer).squeeze,
	"Unsqueeze":         (*inferer).unsqueeze,
	"Cast":              (*inferer).cast,
	"ConstantOfShape":   (*inferer).constantOfShape,
	"Expand":            (*inferer).expand,
}

// need returns input i, or an error when it is absent.
func (inf *inferer) need(n *onnxpb.NodeProto, i int) (*Value, error) {
	v := inf.in(n, i)
	if v == nil {
		return nil, fmt.Errorf("input %d is required", i)
	}
	return v, nil
}

// apply infers a node whose output 0 has the shape that rule computes
// from input 0, keeping input 0's known contents when keep is set (the
// view operators do not change the elements).
func (inf *inferer) apply(n *onnxpb.NodeProto, keep bool, rule func(x *Value) ([]int64, error)) error {
	x, err := inf.need(n, 0)
	if err != nil {
		return err
	}
	out, err := rule(x)
	if err != nil {
		return err
	}
	v := shapeOf(out, x.DType)
	if keep {
		v.Ints, v.Floats = x.Ints, x.Floats
	}
	inf.set(n, 0, v)
	return nil
}
