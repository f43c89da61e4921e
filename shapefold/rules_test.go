package shapefold

import (
	"slices"
	"testing"

	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/internal/enginetest"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// view builds x[N,4,2,2] → Shape → Gather(0) → op(by) → Unsqueeze →
// Concat(with tail) → Reshape(allowzero) → y: the pattern exporters emit
// for x.view(x.size(0) op by, tail...).
func view(op string, by int64, tail []int64, allowZero int64, subgraph bool) *onnxpb.ModelProto {
	dyn := &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}}
	fixed := func(v int64) *onnxpb.TensorShapeProto_Dimension {
		return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: v}}
	}
	tensor := func(name string, dims ...*onnxpb.TensorShapeProto_Dimension) *onnxpb.ValueInfoProto {
		return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: int32(onnxio.Float), Shape: &onnxpb.TensorShapeProto{Dim: dims}}}}}
	}
	node := func(op string, in []string, out string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{OpType: op, Input: in, Output: []string{out}, Name: out, Attribute: attrs}
	}
	ints := func(name string, v ...int64) *onnxpb.AttributeProto {
		return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INTS, Ints: v}
	}
	g := &onnxpb.GraphProto{
		Name:   "view",
		Input:  []*onnxpb.ValueInfoProto{tensor("x", dyn, fixed(4), fixed(2), fixed(2))},
		Output: []*onnxpb.ValueInfoProto{tensor("y")},
		Initializer: []*onnxpb.TensorProto{
			onnxio.NewInt64("zero", nil, []int64{0}),
			onnxio.NewInt64("by", nil, []int64{by}),
			onnxio.NewInt64("tail", []int64{int64(len(tail))}, tail),
		},
		Node: []*onnxpb.NodeProto{
			node("Shape", []string{"x"}, "s"),
			node("Gather", []string{"s", "zero"}, "n"),
			node(op, []string{"n", "by"}, "nb"),
			node("Unsqueeze", []string{"nb"}, "nb1", ints("axes", 0)),
			node("Concat", []string{"nb1", "tail"}, "target", &onnxpb.AttributeProto{Name: "axis", Type: onnxpb.AttributeProto_INT, I: 0}),
			node("Reshape", []string{"x", "target"}, "y", &onnxpb.AttributeProto{Name: "allowzero", Type: onnxpb.AttributeProto_INT, I: allowZero}),
		},
	}
	if subgraph {
		g.Node[0].Attribute = append(g.Node[0].Attribute, &onnxpb.AttributeProto{Name: "body", Type: onnxpb.AttributeProto_GRAPH, G: &onnxpb.GraphProto{Name: "b"}})
	}
	return &onnxpb.ModelProto{IrVersion: 8, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 11}}, Graph: g}
}

// TestReshapeTargets: the rewritten Reshape target for each pattern, or
// none where no constant target is exact.
func TestReshapeTargets(t *testing.T) {
	cases := []struct {
		name      string
		m         *onnxpb.ModelProto
		target    []int64 // nil: the model is left unchanged
		nodesLeft int
		skipped   bool
	}{
		{"batch copied", view("Div", 1, []int64{16}, 0, false), []int64{0, 16}, 1, false},
		{"batch doubled: -1", view("Mul", 2, []int64{8}, 0, false), []int64{-1, 8}, 1, false},
		{"allowzero=1 left alone", view("Div", 1, []int64{16}, 1, false), nil, 6, false},
		{"even batches only: not inferable at every size", view("Div", 2, []int64{32}, 0, false), nil, 6, true},
		{"subgraph", view("Div", 1, []int64{16}, 0, true), nil, 6, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, rep, err := Fold(c.m)
			if err != nil {
				t.Fatal(err)
			}
			if (rep.Skipped != "") != c.skipped {
				t.Errorf("skipped %q", rep.Skipped)
			}
			if len(f.GetGraph().GetNode()) != c.nodesLeft {
				t.Errorf("%d nodes left, want %d", len(f.GetGraph().GetNode()), c.nodesLeft)
			}
			r := f.GetGraph().GetNode()[len(f.GetGraph().GetNode())-1]
			if c.target == nil {
				if rep.Reshapes != 0 || r.GetInput()[1] != "target" {
					t.Errorf("Reshape rewritten: %v", r.GetInput())
				}
				return
			}
			var got []int64
			for _, init := range f.GetGraph().GetInitializer() {
				if init.GetName() == r.GetInput()[1] {
					got, _ = onnxio.Int64s(init)
				}
			}
			if !slices.Equal(got, c.target) || rep.Reshapes != 1 {
				t.Errorf("target %v (%d rewritten), want %v", got, rep.Reshapes, c.target)
			}
			for _, init := range f.GetGraph().GetInitializer() {
				if init.GetName() == "by" || init.GetName() == "tail" {
					t.Errorf("unused initializer %s kept", init.GetName())
				}
			}
		})
	}
}

// TestFoldDistinctDynamicDims: x[N,4,H,W] reshaped to [N,2,2,H,W] by a
// target computed from Shape. With H and W both free, the target's H must
// not be written as "copy position 3" (which holds W): the folded model
// keeps [N,2,2,H,W] at H != W, in the engine.
func TestFoldDistinctDynamicDims(t *testing.T) {
	dim := func(p string, v int64) *onnxpb.TensorShapeProto_Dimension {
		if p != "" {
			return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: p}}
		}
		return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: v}}
	}
	node := func(op string, in []string, out string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{OpType: op, Input: in, Output: []string{out}, Name: out, Attribute: attrs}
	}
	axis0 := &onnxpb.AttributeProto{Name: "axis", Type: onnxpb.AttributeProto_INT, I: 0}
	g := &onnxpb.GraphProto{
		Name: "hw",
		Input: []*onnxpb.ValueInfoProto{{Name: "x", Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: int32(onnxio.Float), Shape: &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{dim("N", 0), dim("", 4), dim("H", 0), dim("W", 0)}}}}}}},
		Output: []*onnxpb.ValueInfoProto{{Name: "y", Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxio.Float)}}}}},
		Initializer: []*onnxpb.TensorProto{
			onnxio.NewInt64("i0", []int64{1}, []int64{0}),
			onnxio.NewInt64("hw", []int64{2}, []int64{2, 3}),
			onnxio.NewInt64("mid", []int64{2}, []int64{2, 2}),
		},
		Node: []*onnxpb.NodeProto{
			node("Shape", []string{"x"}, "s"),
			node("Gather", []string{"s", "i0"}, "n", axis0),
			node("Gather", []string{"s", "hw"}, "h_w", axis0),
			node("Concat", []string{"n", "mid", "h_w"}, "target", axis0),
			node("Reshape", []string{"x", "target"}, "y"),
		},
	}
	m := &onnxpb.ModelProto{IrVersion: 8, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 13}}, Graph: g}
	f, _, err := Fold(m)
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string][]int{"x": {2, 4, 3, 5}}
	in := map[string]*engine.Tensor{"x": engine.NewTensorF(enginetest.Fill([]int{2, 4, 3, 5}, 1), 2, 4, 3, 5)}
	want, got := run(t, m, shapes, in)["y"], run(t, f, shapes, in)["y"]
	if !slices.Equal(want.Shape, []int{2, 2, 2, 3, 5}) || !slices.Equal(got.Shape, want.Shape) || !slices.Equal(got.F, want.F) {
		t.Errorf("folded output shape %v, original %v", got.Shape, want.Shape)
	}
}
