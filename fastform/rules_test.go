package fastform

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// builder makes small graphs with a dynamic batch for the rule tables.
type builder struct {
	g *onnxpb.GraphProto
}

func newBuilder() *builder { return &builder{g: &onnxpb.GraphProto{Name: "t"}} }

func (b *builder) input(name string, c int64) {
	dyn := &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}}
	dims := []*onnxpb.TensorShapeProto_Dimension{dyn}
	for _, v := range []int64{c, 3, 3} {
		dims = append(dims, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: v}})
	}
	b.g.Input = append(b.g.Input, &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxio.Float), Shape: &onnxpb.TensorShapeProto{Dim: dims}}}}})
}

func (b *builder) output(names ...string) {
	for _, n := range names {
		b.g.Output = append(b.g.Output, &onnxpb.ValueInfoProto{Name: n, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxio.Float)}}}})
	}
}

func (b *builder) node(op, out string, in []string, attrs ...*onnxpb.AttributeProto) {
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{OpType: op, Name: out, Input: in, Output: []string{out}, Attribute: attrs})
}

func (b *builder) floats(name string, dims []int64, v []float32) {
	b.g.Initializer = append(b.g.Initializer, onnxio.NewFloat32(name, dims, v))
}

func (b *builder) ints(name string, v ...int64) {
	b.g.Initializer = append(b.g.Initializer, onnxio.NewInt64(name, []int64{int64(len(v))}, v))
}

func (b *builder) model(opset int64) *onnxpb.ModelProto {
	return &onnxpb.ModelProto{IrVersion: 8, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: opset}}, Graph: b.g}
}

func aInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INT, I: v}
}

func aInts(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INTS, Ints: v}
}

func ramp(n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = scale * float32((i*7)%11-5) / 5
	}
	return v
}

// shuffleCase builds Concat(x₁…x_g) → Reshape(target) → Transpose(perm) →
// Reshape([0, C, 3, 3]) → y, with each x_i of channels[i] channels.
type shuffleCase struct {
	name      string
	channels  []int64
	axis      int64
	target    []int64
	perm      []int64
	opset     int64
	concatOut bool // the Concat's output is also a graph output
	targetIn  bool // the Reshape target is also a graph input
	transOut  bool // the Transpose's output is also a graph output
	want      int
}

func (c shuffleCase) model() *onnxpb.ModelProto {
	b := newBuilder()
	var ins []string
	var total int64
	for i, ch := range c.channels {
		name := string(rune('a' + i))
		b.input(name, ch)
		ins = append(ins, name)
		total += ch
	}
	b.ints("target", c.target...)
	b.ints("back", 0, total, 3, 3)
	b.node("Concat", "cat", ins, aInt("axis", c.axis))
	b.node("Reshape", "r1", []string{"cat", "target"})
	b.node("Transpose", "tr", []string{"r1"}, aInts("perm", c.perm...))
	b.node("Reshape", "y", []string{"tr", "back"})
	b.output("y")
	if c.concatOut {
		b.output("cat")
	}
	if c.targetIn {
		b.g.Input = append(b.g.Input, &onnxpb.ValueInfoProto{Name: "target", Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxio.Int64), Shape: &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 5}}}}}}}})
	}
	if c.transOut {
		b.output("tr")
	}
	opset := c.opset
	if opset == 0 {
		opset = 13
	}
	return b.model(opset)
}

func TestShuffleRules(t *testing.T) {
	shuffle := []int64{0, 2, 1, 3, 4}
	cases := []shuffleCase{
		{name: "two inputs", channels: []int64{4, 4}, axis: 1, target: []int64{0, 2, 4, 3, 3}, perm: shuffle, want: 1},
		{name: "three inputs", channels: []int64{2, 2, 2}, axis: 1, target: []int64{0, 3, 2, 3, 3}, perm: shuffle, want: 1},
		{name: "negative axis, -1 batch", channels: []int64{4, 4}, axis: -3, target: []int64{-1, 2, 4, 3, 3}, perm: shuffle, want: 1},
		{name: "opset 11 (axes attribute)", channels: []int64{4, 4}, axis: 1, target: []int64{0, 2, 4, 3, 3}, perm: shuffle, opset: 11, want: 1},
		{name: "transposed value is a graph output", channels: []int64{4, 4}, axis: 1, target: []int64{0, 2, 4, 3, 3}, perm: shuffle, transOut: true, want: 1},
		{name: "target overridable (a graph input)", channels: []int64{4, 4}, axis: 1, target: []int64{0, 2, 4, 3, 3}, perm: shuffle, targetIn: true},
		{name: "concat read elsewhere", channels: []int64{4, 4}, axis: 1, target: []int64{0, 2, 4, 3, 3}, perm: shuffle, concatOut: true},
		{name: "other permutation", channels: []int64{4, 4}, axis: 1, target: []int64{0, 2, 4, 3, 3}, perm: []int64{0, 1, 2, 4, 3}},
		{name: "unequal inputs", channels: []int64{4, 2}, axis: 1, target: []int64{0, 2, 3, 3, 3}, perm: shuffle},
		{name: "groups not the input count", channels: []int64{4, 4}, axis: 1, target: []int64{0, 4, 2, 3, 3}, perm: shuffle},
		{name: "spatial dims regrouped", channels: []int64{4, 4}, axis: 1, target: []int64{0, 2, 4, 9, 1}, perm: shuffle},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.model()
			f, rep := checkedRewrite(t, m)
			if rep.Shuffles != c.want {
				t.Fatalf("%d shuffles rewritten, want %d", rep.Shuffles, c.want)
			}
			for _, batch := range []int{1, 4} {
				want, got := runEngine(t, m, batch), runEngine(t, f, batch)
				for k, w := range want {
					if g := got[k]; g == nil || len(g.F) != len(w.F) {
						t.Fatalf("batch %d: output %s missing", batch, k)
					}
					for i := range w.F {
						if w.F[i] != got[k].F[i] {
							t.Fatalf("batch %d: %s[%d] = %g, want %g", batch, k, i, got[k].F[i], w.F[i])
						}
					}
				}
			}
		})
	}
}

// diagCase builds x = producer(in) → module Add(U(V x) + b, D x) → y.
type diagCase struct {
	name     string
	producer string // "dwconv", "conv-nobias", "bn", "relu", or "dwconv" or "bn" then "-relu" or "-leaky"
	diag     []float32
	swapAdd  bool // Add(D x, U(V x))
	xOut     bool // x is also a graph output
	shareW   bool // another Conv reads the producer's weight
	resBias  bool // the residual Conv has a bias
	weightIn bool // the producer's weight is also a graph input
	preOut   bool // the activation's input is also a graph output
	want     int
}

func (c diagCase) model() *onnxpb.ModelProto {
	const C, R = 4, 2
	b := newBuilder()
	b.input("in", C)
	base, act, _ := strings.Cut(c.producer, "-")
	if base == "conv" {
		base, act = c.producer, ""
	}
	xName := "x"
	if act != "" {
		xName = "pre"
	}
	switch base {
	case "dwconv", "conv-nobias":
		b.floats("pw", []int64{C, 1, 3, 3}, ramp(C*9, 0.5))
		in := []string{"in", "pw"}
		if c.producer == "dwconv" {
			b.floats("pb", []int64{C}, ramp(C, 0.3))
			in = append(in, "pb")
		}
		b.node("Conv", xName, in, aInt("group", C), aInts("pads", 1, 1, 1, 1))
	case "bn":
		b.floats("scale", []int64{C}, []float32{1.5, 0.5, 2, 1})
		b.floats("shift", []int64{C}, []float32{0.1, -0.2, 0.3, 0})
		b.floats("mean", []int64{C}, []float32{0.05, 0, -0.1, 0.2})
		b.floats("var", []int64{C}, []float32{1, 2, 0.5, 1.5})
		b.node("BatchNormalization", xName, []string{"in", "scale", "shift", "mean", "var"})
	case "relu":
		b.node("Relu", "x", []string{"in"})
	}
	switch act {
	case "relu":
		b.node("Relu", "x", []string{"pre"})
	case "leaky":
		b.node("LeakyRelu", "x", []string{"pre"}, &onnxpb.AttributeProto{Name: "alpha", Type: onnxpb.AttributeProto_FLOAT, F: 0.1})
	}
	if c.preOut {
		b.output("pre")
	}
	b.floats("V", []int64{R, C, 1, 1}, ramp(R*C, 1))
	b.floats("U", []int64{C, R, 1, 1}, ramp(C*R, 0.7))
	b.floats("ub", []int64{C}, ramp(C, 0.2))
	b.floats("D", []int64{C, 1, 1, 1}, c.diag)
	b.node("Conv", "h", []string{"x", "V"})
	b.node("Conv", "u", []string{"h", "U", "ub"})
	res := []string{"x", "D"}
	if c.resBias {
		b.floats("db", []int64{C}, ramp(C, 0.1))
		res = append(res, "db")
	}
	b.node("Conv", "r", res, aInt("group", C))
	if c.swapAdd {
		b.node("Add", "y", []string{"r", "u"})
	} else {
		b.node("Add", "y", []string{"u", "r"})
	}
	b.output("y")
	if c.xOut {
		b.output("x")
	}
	if c.weightIn {
		b.g.Input = append(b.g.Input, &onnxpb.ValueInfoProto{Name: "pw", Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxio.Float), Shape: &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{
				{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: C}}, {Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 1}},
				{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 3}}, {Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 3}}}}}}}})
	}
	if c.shareW {
		b.input("in2", C)
		b.node("Conv", "other", []string{"in2", "pw"}, aInt("group", C), aInts("pads", 1, 1, 1, 1))
		b.output("other")
	}
	return b.model(13)
}

func TestDiagFoldRules(t *testing.T) {
	d := []float32{0.8, -1.3, 0.25, -0.05}
	pos := []float32{0.8, 1.3, 0.25, 0.05}
	cases := []diagCase{
		{name: "depthwise conv with bias", producer: "dwconv", diag: d, want: 1},
		{name: "conv without bias", producer: "conv-nobias", diag: d, want: 1},
		{name: "batch norm", producer: "bn", diag: d, want: 1},
		{name: "add operands swapped", producer: "dwconv", diag: d, swapAdd: true, want: 1},
		{name: "shared producer weight", producer: "dwconv", diag: d, shareW: true, want: 1},
		{name: "relu producer", producer: "relu", diag: d},
		{name: "conv then relu, positive scales", producer: "dwconv-relu", diag: pos, want: 1},
		{name: "batch norm then relu, positive scales", producer: "bn-relu", diag: pos, want: 1},
		{name: "conv then leaky relu, positive scales", producer: "dwconv-leaky", diag: pos, want: 1},
		{name: "conv then relu, a negative scale", producer: "dwconv-relu", diag: d},
		{name: "conv then relu, a zero scale", producer: "dwconv-relu", diag: []float32{0.8, 0, 0.25, 1}},
		{name: "conv then relu, pre-activation read elsewhere", producer: "dwconv-relu", diag: pos, preOut: true},
		{name: "zero scale", producer: "dwconv", diag: []float32{0.8, 0, 0.25, 1}},
		{name: "tiny scale", producer: "dwconv", diag: []float32{0.8, 1e-6, 0.25, 1}},
		{name: "input read elsewhere", producer: "dwconv", diag: d, xOut: true},
		{name: "residual with bias", producer: "dwconv", diag: d, resBias: true},
		{name: "producer weight overridable (a graph input)", producer: "dwconv", diag: d, weightIn: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.model()
			f, rep := checkedRewrite(t, m)
			if len(rep.DiagFolds) != c.want {
				t.Fatalf("%d diag folds, want %d", len(rep.DiagFolds), c.want)
			}
			if c.want > 0 && testutil.OpCount(f, "Conv") != testutil.OpCount(m, "Conv")-1 {
				t.Errorf("Conv %d -> %d", testutil.OpCount(m, "Conv"), testutil.OpCount(f, "Conv"))
			}
			if c.shareW && len(f.GetGraph().GetInitializer()) != len(m.GetGraph().GetInitializer())-1+1 {
				// D is gone, the producer's weight is copied.
				t.Errorf("initializers %d -> %d", len(m.GetGraph().GetInitializer()), len(f.GetGraph().GetInitializer()))
			}
			for _, batch := range []int{1, 3} {
				if e := relErr(t, runEngine(t, m, batch), runEngine(t, f, batch)); e > 1e-6 {
					t.Errorf("batch %d: relative error %.3g", batch, e)
				}
			}
		})
	}
}

// TestRewriteOptions: Options turn each rewrite off.
func TestRewriteOptions(t *testing.T) {
	m := diagCase{producer: "dwconv", diag: []float32{1, 2, 3, 4}}.model()
	if _, rep, err := Rewrite(m, Options{NoDiagFold: true}); err != nil || rep.Changed() {
		t.Errorf("NoDiagFold: %+v, %v", rep, err)
	}
	s := shuffleCase{channels: []int64{4, 4}, axis: 1, target: []int64{0, 2, 4, 3, 3}, perm: []int64{0, 2, 1, 3, 4}}.model()
	if _, rep, err := Rewrite(s, Options{NoShuffle: true}); err != nil || rep.Changed() {
		t.Errorf("NoShuffle: %+v, %v", rep, err)
	}
}

// padCase builds in → head Conv (4 → C) → between1 → depthwise Conv (C)
// → between2 → tail Conv (C → 5) → y.
type padCase struct {
	name    string
	C       int64
	before  []string // "relu", "bn", "sigmoid" between head and depthwise
	after   []string // the same between depthwise and tail
	dwOut   bool     // the depthwise output is also a graph output
	tailGrp bool     // the tail is a grouped Conv
	shareW  bool     // another Conv reads the head's weight
	noBias  bool
	want    int
}

func (c padCase) model() *onnxpb.ModelProto {
	b := newBuilder()
	b.input("in", 4)
	C := c.C
	b.floats("hw", []int64{C, 4, 1, 1}, ramp(int(C)*4, 0.6))
	head := []string{"in", "hw"}
	dw := []string{"", "dw"}
	if !c.noBias {
		b.floats("hb", []int64{C}, ramp(int(C), 0.2))
		b.floats("db", []int64{C}, ramp(int(C), 0.1))
		head = append(head, "hb")
		dw = append(dw, "db")
	}
	b.node("Conv", "h", head)
	v := "h"
	chain := func(ops []string, tag string) {
		for i, op := range ops {
			out := fmt.Sprintf("%s%d", tag, i)
			switch op {
			case "relu":
				b.node("Relu", out, []string{v})
			case "sigmoid":
				b.node("Sigmoid", out, []string{v})
			case "bn":
				p := func(k string, s float32) string {
					name := out + k
					v := ramp(int(C), s)
					if k == "var" {
						for j := range v {
							v[j] = 1 + v[j]*v[j]
						}
					}
					b.floats(name, []int64{C}, v)
					return name
				}
				b.node("BatchNormalization", out, []string{v, p("scale", 1.2), p("shift", 0.3), p("mean", 0.2), p("var", 0.5)})
			}
			v = out
		}
	}
	chain(c.before, "a")
	b.floats("dw", []int64{C, 1, 3, 3}, ramp(int(C)*9, 0.4))
	dw[0] = v
	b.node("Conv", "d", dw, aInt("group", C), aInts("pads", 1, 1, 1, 1))
	v = "d"
	chain(c.after, "b")
	if c.tailGrp {
		b.floats("tw", []int64{5, 1, 1, 1}, ramp(5, 0.5))
		b.node("Conv", "y", []string{v, "tw"}, aInt("group", C))
	} else {
		b.floats("tw", []int64{5, C, 1, 1}, ramp(5*int(C), 0.5))
		b.node("Conv", "y", []string{v, "tw"})
	}
	b.output("y")
	if c.dwOut {
		b.output("d")
	}
	if c.shareW {
		b.input("in2", 4)
		b.node("Conv", "other", []string{"in2", "hw"})
		b.output("other")
	}
	return b.model(13)
}

func TestPadRules(t *testing.T) {
	cases := []padCase{
		{name: "relu between", C: 6, before: []string{"relu"}, want: 1},
		{name: "batch norms and relu", C: 6, before: []string{"bn", "relu"}, after: []string{"bn"}, want: 1},
		{name: "no biases", C: 7, noBias: true, want: 1},
		{name: "shared head weight", C: 6, before: []string{"relu"}, shareW: true, want: 1},
		{name: "already a multiple of 4", C: 8, before: []string{"relu"}},
		{name: "depthwise output read elsewhere", C: 6, dwOut: true},
		{name: "sigmoid between (not zero at zero)", C: 6, before: []string{"sigmoid"}},
		{name: "grouped tail", C: 5, tailGrp: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.model()
			f, rep := checkedRewrite(t, m)
			if len(rep.Padded) != c.want {
				t.Fatalf("%d chains padded, want %d", len(rep.Padded), c.want)
			}
			if c.want > 0 && rep.Padded[0].To%PadMultiple != 0 {
				t.Errorf("padded to %d", rep.Padded[0].To)
			}
			for _, batch := range []int{1, 3} {
				want, got := runEngine(t, m, batch), runEngine(t, f, batch)
				if e := relErr(t, want, got); e > 1e-6 {
					t.Errorf("batch %d: relative error %.3g", batch, e)
				}
			}
		})
	}
}

// checkedRewrite checks m, rewrites it with every rewrite on and checks
// the result.
func checkedRewrite(t *testing.T, m *onnxpb.ModelProto) (*onnxpb.ModelProto, Report) {
	t.Helper()
	if err := onnxio.Check(m); err != nil {
		t.Fatal(err)
	}
	f, rep, err := Rewrite(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := onnxio.Check(f); err != nil {
		t.Fatalf("rewritten model: %v", err)
	}
	return f, rep
}
