package convert

import (
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// shapeHints declares the shapes of the tensors an LPR module reads and
// writes as value_info, so that runtimes know them even where their own
// shape inference cannot see through the graph (ShuffleNetV2's channel
// split is a Slice with bounds computed at run time). ONNX Runtime fuses
// the module's Add into the Conv before it only when it can prove that
// both Add inputs have the same shape.
type shapeHints struct {
	one, two *Shapes // dynamic dims taken as 1 and as 2
	dynName  string  // the one name of the inputs' dynamic dims, or ""
}

// newShapeHints infers shapes twice, with dynamic input dims at 1 and at
// 2, so that dims that follow them can be told from fixed ones. It returns
// nil when inference fails (the hints are only an optimization).
func newShapeHints(m *onnxpb.ModelProto) *shapeHints {
	one, err := InferShapes(m, ShapeOptions{})
	if err != nil {
		return nil
	}
	inits := map[string]bool{}
	for _, t := range m.GetGraph().GetInitializer() {
		inits[t.GetName()] = true
	}
	override := map[string][]int64{}
	names := map[string]bool{}
	for _, in := range m.GetGraph().GetInput() {
		if inits[in.GetName()] {
			continue
		}
		dims := in.GetType().GetTensorType().GetShape().GetDim()
		if dims == nil {
			continue
		}
		shape := make([]int64, len(dims))
		dynamic := false
		for i, d := range dims {
			shape[i] = d.GetDimValue()
			if shape[i] <= 0 {
				shape[i] = 2
				dynamic = true
				names[d.GetDimParam()] = true
			}
		}
		if dynamic {
			override[in.GetName()] = shape
		}
	}
	h := &shapeHints{one: one, two: one}
	if len(override) > 0 {
		if h.two, err = InferShapes(m, ShapeOptions{InputShapes: override}); err != nil {
			return nil
		}
	}
	if len(names) == 1 {
		for n := range names {
			h.dynName = n
		}
	}
	return h
}

// info returns a value_info for tensor with the shape of ref (a tensor of
// the original graph), its channel dim (1) replaced by channels when
// channels > 0; nil when the shape is unknown.
func (h *shapeHints) info(tensor, ref string, channels int64) *onnxpb.ValueInfoProto {
	a, b := h.one.Get(ref), h.two.Get(ref)
	if !a.Known || !b.Known || len(a.Shape) != len(b.Shape) || len(a.Shape) < 2 {
		return nil
	}
	shape := &onnxpb.TensorShapeProto{}
	for i := range a.Shape {
		d := &onnxpb.TensorShapeProto_Dimension{}
		switch {
		case i == 1 && channels > 0:
			d.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: channels}
		case a.Shape[i] == b.Shape[i]:
			d.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: a.Shape[i]}
		case a.Shape[i] == 1 && b.Shape[i] == 2 && h.dynName != "":
			d.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: h.dynName}
		}
		shape.Dim = append(shape.Dim, d)
	}
	return &onnxpb.ValueInfoProto{Name: tensor, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxio.Float), Shape: shape}}}}
}

// addModuleHints appends value_info for the tensors of one LPR module
// (its input, its output and the tensors between) that the graph does not
// describe yet.
func (h *shapeHints) addModuleHints(g *onnxpb.GraphProto, l *LayerPlan, nodes []*onnxpb.NodeProto) {
	if h == nil {
		return
	}
	declared := map[string]bool{}
	for _, v := range g.GetValueInfo() {
		declared[v.GetName()] = true
	}
	for _, v := range g.GetInput() {
		declared[v.GetName()] = true
	}
	for _, v := range g.GetOutput() {
		declared[v.GetName()] = true
	}
	add := func(v *onnxpb.ValueInfoProto) {
		if v != nil && !declared[v.GetName()] {
			declared[v.GetName()] = true
			g.ValueInfo = append(g.ValueInfo, v)
		}
	}
	add(h.info(l.Input, l.Input, 0))
	for i, n := range nodes {
		channels := int64(0) // the module's output channels
		if i == 0 {
			channels = int64(l.Factors.Rank) // lpr_a: C -> r
		}
		add(h.info(n.GetOutput()[0], l.Output, channels))
	}
}
