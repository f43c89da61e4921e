package chanperm

import (
	"context"
	"testing"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// chain builds in → Conv a (C×C 1×1, bias) → middle → Conv bconv (C×C
// 1×1) → Relu → out, with C = 6; middle adds the operations a case names,
// and want says whether a's output channels may be relabeled.
type chain struct {
	name   string
	middle func(b *builder, x string) string // returns the value B reads
	extra  func(b *builder)                  // after the graph is built
	want   bool                              // relabeled
}

const C = 6

type builder struct{ g *onnxpb.GraphProto }

func (b *builder) floats(name string, dims []int64, seed int) {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		// Deterministic values with off-diagonal entries larger than the
		// diagonal ones, so that relabeling pays.
		v[i] = float32(((i*7+seed*13)%17)-8) / 8
	}
	b.g.Initializer = append(b.g.Initializer, onnxio.NewFloat32(name, dims, v))
}

func (b *builder) node(op, out string, in []string, attrs ...*onnxpb.AttributeProto) {
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{OpType: op, Name: out, Input: in, Output: []string{out}, Attribute: attrs})
}

func valueInfo(name string) *onnxpb.ValueInfoProto {
	dims := []*onnxpb.TensorShapeProto_Dimension{}
	for _, d := range []int64{1, C, 4, 4} {
		dims = append(dims, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxio.Float), Shape: &onnxpb.TensorShapeProto{Dim: dims}}}}}
}

func groupAttr(g int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: "group", Type: onnxpb.AttributeProto_INT, I: g}
}

func (c chain) model() *onnxpb.ModelProto {
	b := &builder{g: &onnxpb.GraphProto{Name: "t", Input: []*onnxpb.ValueInfoProto{valueInfo("in")}, Output: []*onnxpb.ValueInfoProto{valueInfo("out")}}}
	b.floats("wa", []int64{C, C, 1, 1}, 1)
	b.floats("ba", []int64{C}, 2)
	b.floats("wb", []int64{C, C, 1, 1}, 3)
	b.node("Conv", "a", []string{"in", "wa", "ba"})
	x := "a"
	if c.middle != nil {
		x = c.middle(b, x)
	}
	b.node("Conv", "bconv", []string{x, "wb"})
	b.node("Relu", "out", []string{"bconv"})
	if c.extra != nil {
		c.extra(b)
	}
	return &onnxpb.ModelProto{IrVersion: 8, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 13}}, Graph: b.g}
}

func TestGroupRules(t *testing.T) {
	cases := []chain{
		{name: "conv to conv", want: true},
		{name: "relu between", middle: func(b *builder, x string) string { b.node("Relu", "r", []string{x}); return "r" }, want: true},
		{name: "batch norm, depthwise conv, clip", middle: func(b *builder, x string) string {
			for i, n := range []string{"s", "sh", "mu", "var"} {
				b.floats(n, []int64{C}, 4+i)
			}
			b.g.Initializer[len(b.g.Initializer)-1] = onnxio.NewFloat32("var", []int64{C}, []float32{1, 2, 0.5, 1, 3, 0.25})
			b.node("BatchNormalization", "bn", []string{x, "s", "sh", "mu", "var"})
			b.floats("dw", []int64{C, 1, 3, 3}, 8)
			b.floats("dwb", []int64{C}, 9)
			b.node("Conv", "dwc", []string{"bn", "dw", "dwb"}, groupAttr(C),
				&onnxpb.AttributeProto{Name: "pads", Type: onnxpb.AttributeProto_INTS, Ints: []int64{1, 1, 1, 1}})
			b.g.Initializer = append(b.g.Initializer, onnxio.NewFloat32("lo", nil, []float32{0}), onnxio.NewFloat32("hi", nil, []float32{6}))
			b.node("Clip", "cl", []string{"dwc", "lo", "hi"})
			return "cl"
		}, want: true},
		{name: "value also a graph output", extra: func(b *builder) { b.g.Output = append(b.g.Output, valueInfo("a")) }},
		{name: "residual Add of two values", middle: func(b *builder, x string) string {
			b.node("Relu", "r", []string{x})
			b.node("Add", "s", []string{x, "r"})
			return "s"
		}},
		{name: "Concat", middle: func(b *builder, x string) string {
			b.g.Node = append(b.g.Node, &onnxpb.NodeProto{OpType: "Concat", Name: "cat", Input: []string{x}, Output: []string{"cat"},
				Attribute: []*onnxpb.AttributeProto{{Name: "axis", Type: onnxpb.AttributeProto_INT, I: 1}}})
			return "cat"
		}},
		{name: "Clip bound of one value per channel", middle: func(b *builder, x string) string {
			b.floats("lo", []int64{C, 1, 1}, 10)
			b.node("Clip", "cl", []string{x, "lo"})
			return "cl"
		}},
		{name: "depthwise conv with two outputs per channel", middle: func(b *builder, x string) string {
			b.floats("dw", []int64{2 * C, 1, 1, 1}, 8)
			b.node("Conv", "dwc", []string{x, "dw"}, groupAttr(C))
			b.floats("wsq", []int64{C, 2 * C, 1, 1}, 11)
			b.node("Conv", "sq", []string{"dwc", "wsq"})
			return "sq"
		}},
		{name: "producer weight shared", extra: func(b *builder) {
			b.g.Node[0].Input[1] = "wb"
		}},
		{name: "producer weight a graph input", extra: func(b *builder) {
			in := valueInfo("wa")
			b.g.Input = append(b.g.Input, in)
		}},
		{name: "sink reads the value twice", extra: func(b *builder) {
			b.node("Mul", "m", []string{"a", "a"})
			b.g.Output = append(b.g.Output, valueInfo("m"))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.model()
			p, rep, err := Permute(context.Background(), m, Options{Rank: func(int) int { return 2 }})
			if err != nil {
				t.Fatal(err)
			}
			got := false
			for _, l := range rep.Layers {
				got = got || (l.Name == "a" && l.Relabeled)
			}
			if got != c.want {
				t.Fatalf("a's output relabeled %v, want %v (report %+v)", got, c.want, rep)
			}
			if !c.want {
				return
			}
			before, after := run(t, m), run(t, p)
			for k, w := range before {
				if e := relErr(after[k].F, w.F); e > 1e-6 {
					t.Errorf("output %s: relative error %g", k, e)
				}
			}
			for _, l := range rep.Layers {
				if l.Relabeled && l.DiagShareAfter < l.DiagShareBefore {
					t.Errorf("%s: diagonal share %.3f -> %.3f", l.Name, l.DiagShareBefore, l.DiagShareAfter)
				}
			}
		})
	}
}

// TestPermuteNoGraph: a model without a graph comes back as it is.
func TestPermuteNoGraph(t *testing.T) {
	p, rep, err := Permute(context.Background(), &onnxpb.ModelProto{}, Options{})
	if err != nil || rep.Groups != 0 || p == nil {
		t.Fatalf("%v %+v %v", p, rep, err)
	}
}

// TestPermuteCancelled: a cancelled context stops Permute.
func TestPermuteCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Permute(ctx, chain{}.model(), Options{}); err == nil {
		t.Fatal("no error from a cancelled context")
	}
}
