package chanperm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/internal/enginetest"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/ortapi"
)

// This file holds adversarial cases: graphs built to catch a relabeling
// that changes what a model computes, corrupts a tensor it cannot handle,
// or writes a model that ONNX's checker or ONNX Runtime rejects. Each case
// runs in the engine and in ONNX Runtime before and after Permute.

// rb builds review graphs over an input "in" of shape [1, C, 8, 8].
type rb struct {
	builder
	seed uint64
}

func newRB(opset int64) (*rb, func() *onnxpb.ModelProto) {
	b := &rb{builder: builder{g: &onnxpb.GraphProto{Name: "review"}}}
	b.g.Input = append(b.g.Input, tensorInfo("in", onnxio.Float, 1, C, 8, 8))
	return b, func() *onnxpb.ModelProto {
		return &onnxpb.ModelProto{IrVersion: 8, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: opset}}, Graph: b.g}
	}
}

// tensorInfo is a value_info of element type et: an int dim is fixed, any
// other (−1) a dim_param.
func tensorInfo(name string, et onnxio.DataType, dims ...int64) *onnxpb.ValueInfoProto {
	var ds []*onnxpb.TensorShapeProto_Dimension
	for i, d := range dims {
		if d < 0 {
			ds = append(ds, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: fmt.Sprintf("%s_%d", name, i)}})
			continue
		}
		ds = append(ds, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(et), Shape: &onnxpb.TensorShapeProto{Dim: ds}}}}}
}

// out declares float graph outputs of rank 4 with symbolic dimensions.
func (b *rb) out(names ...string) {
	for _, n := range names {
		b.g.Output = append(b.g.Output, tensorInfo(n, onnxio.Float, -1, -1, -1, -1))
	}
}

// w adds a float initializer of random values in [-1, 1).
func (b *rb) w(name string, dims ...int64) {
	b.seed++
	s := make([]int, len(dims))
	for i, d := range dims {
		s[i] = int(d)
	}
	b.g.Initializer = append(b.g.Initializer, onnxio.NewFloat32(name, dims, enginetest.Fill(s, b.seed*31)))
}

// pos adds a float initializer of values in [0.5, 1.5) (BN scales and
// variances).
func (b *rb) pos(name string, n int64) {
	b.seed++
	v := enginetest.Fill([]int{int(n)}, b.seed*31)
	for i := range v {
		v[i] = 1 + v[i]/2
	}
	b.g.Initializer = append(b.g.Initializer, onnxio.NewFloat32(name, []int64{n}, v))
}

func (b *rb) scalar(name string, v float32) {
	b.g.Initializer = append(b.g.Initializer, onnxio.NewFloat32(name, nil, []float32{v}))
}

// conv adds a Conv out = Conv(x; name_w[, name_b]) of co×ci×k×k weight.
func (b *rb) conv(out, x string, co, ci, k int64, bias bool, attrs ...*onnxpb.AttributeProto) {
	b.w(out+"_w", co, ci, k, k)
	in := []string{x, out + "_w"}
	if bias {
		b.w(out+"_b", co)
		in = append(in, out+"_b")
	}
	b.node("Conv", out, in, attrs...)
}

// bn adds an inference BatchNormalization with parameters of its own.
func (b *rb) bn(out, x string, c int64) {
	b.pos(out+"_s", c)
	b.w(out+"_sh", c)
	b.w(out+"_m", c)
	b.pos(out+"_v", c)
	b.node("BatchNormalization", out, []string{x, out + "_s", out + "_sh", out + "_m", out + "_v"})
}

func ints(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INTS, Ints: v}
}

func flt(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_FLOAT, F: v}
}

func str(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_STRING, S: []byte(v)}
}

// base builds in → Conv a (C×C 1×1, bias) → mid → Conv s (C×C 1×1,
// bias) → Relu → out: both convolutions square, so a's group is relabeled
// unless mid (or extra) blocks it.
func base(opset int64, mid func(b *rb, x string) string, extra func(b *rb)) func() *onnxpb.ModelProto {
	return func() *onnxpb.ModelProto {
		b, model := newRB(opset)
		b.conv("a", "in", C, C, 1, true)
		x := "a"
		if mid != nil {
			x = mid(b, x)
		}
		b.conv("s", x, C, C, 1, true)
		b.node("Relu", "out", []string{"s"})
		b.out("out")
		if extra != nil {
			extra(b)
		}
		return model()
	}
}

// permCase is one constructed model and what Permute must make of it.
type permCase struct {
	name  string
	model func() *onnxpb.ModelProto
	opts  Options
	// groups is the number of groups Permute must relabel; -1: any.
	groups int
	// wantErr: Permute must fail (with an error, not a panic).
	wantErr bool
	// noEngine: the engine does not run this model (ONNX Runtime only).
	noEngine bool
	// noORT: ONNX Runtime does not run this model.
	noORT bool
	// check inspects the relabeled model.
	check func(t *testing.T, orig, perm *onnxpb.ModelProto)
}

// unchanged fails unless the named initializers are the same in both.
func unchanged(names ...string) func(t *testing.T, orig, perm *onnxpb.ModelProto) {
	return func(t *testing.T, orig, perm *onnxpb.ModelProto) {
		t.Helper()
		find := func(m *onnxpb.ModelProto, n string) *onnxpb.TensorProto {
			for _, x := range m.GetGraph().GetInitializer() {
				if x.GetName() == n {
					return x
				}
			}
			return nil
		}
		for _, n := range names {
			if a, b := find(orig, n), find(perm, n); a == nil || !proto.Equal(a, b) {
				t.Errorf("initializer %s changed", n)
			}
		}
	}
}

func runPermCases(t *testing.T, cases []permCase) {
	t.Helper()
	rt := loadORT(t)
	dir := t.TempDir()
	var written []string
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.model()
			if err := onnxio.Check(m); err != nil {
				t.Fatalf("test model: %v", err)
			}
			before := proto.Clone(m)
			p, rep, err := Permute(context.Background(), m, c.opts)
			if !proto.Equal(m, before) {
				t.Fatal("Permute modified its input")
			}
			if c.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				t.Logf("error: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.groups >= 0 && rep.Groups != c.groups {
				t.Errorf("%d groups relabeled, want %d (%+v)", rep.Groups, c.groups, rep)
			}
			if err := onnxio.Check(p); err != nil {
				t.Fatalf("relabeled model: %v", err)
			}
			if c.check != nil {
				c.check(t, m, p)
			}
			if !c.noEngine {
				want, got := run(t, m), run(t, p)
				for k, w := range want {
					if e := relErr(got[k].F, w.F); !(e <= 1e-5) {
						t.Errorf("engine: output %s: relative error %g", k, e)
					}
				}
			}
			orig, perm := filepath.Join(dir, fmt.Sprintf("orig%d.onnx", ci)), filepath.Join(dir, fmt.Sprintf("perm%d.onnx", ci))
			for path, mm := range map[string]*onnxpb.ModelProto{orig: m, perm: p} {
				if err := onnxio.Save(path, mm, onnxio.SaveOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			written = append(written, orig, perm)
			if rt != nil && !c.noORT {
				ortCompare(t, rt, m, orig, perm)
			}
		})
	}
	testutil.CheckONNXAll(t, written)
}

// loadORT loads ONNX Runtime for the test (closed at its end), or returns
// nil where it is missing outside CI.
func loadORT(t *testing.T) *ortapi.Runtime {
	t.Helper()
	lib := testutil.RequireORT(t)
	if lib == "" {
		return nil
	}
	rt, err := ortapi.Load(lib)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// ortCompare runs the models at paths a and b in ONNX Runtime on the same
// inputs (m's graph inputs at batch 2) and fails unless they agree.
func ortCompare(t *testing.T, rt *ortapi.Runtime, m *onnxpb.ModelProto, a, b string) {
	t.Helper()
	_, shapes := testutil.GraphInputs(m, 2)
	in := map[string]ortapi.Tensor{}
	for name, s := range shapes {
		in[name] = ortapi.Tensor{Shape: testutil.Int64s(s), Data: enginetest.Fill(s, 5)}
	}
	res := make([]map[string]ortapi.Tensor, 2)
	for i, path := range []string{a, b} {
		s, err := rt.NewSessionFromFile(path, ortapi.Options{IntraOpThreads: 1})
		if err != nil {
			t.Fatalf("ONNX Runtime: %v", err)
		}
		res[i], err = s.Run(in, nil)
		s.Close()
		if err != nil {
			t.Fatalf("ONNX Runtime: %v", err)
		}
	}
	for k, w := range res[0] {
		if e := relErr(res[1][k].Data, w.Data); !(e <= 1e-5) {
			t.Errorf("ONNX Runtime: output %s: relative error %g", k, e)
		}
	}
}

// ifReading returns an If node (cond a bool initializer) whose branches
// return Relu(v) of the outer value v: a subgraph reads v though the If
// node does not list it as an input.
func (b *rb) ifReading(out, v string) {
	b.g.Initializer = append(b.g.Initializer, &onnxpb.TensorProto{Name: out + "_cond", DataType: int32(onnxio.Bool), Int32Data: []int32{1}})
	branch := func(name, op string) *onnxpb.AttributeProto {
		g := &onnxpb.GraphProto{Name: out + "_" + name,
			Node:   []*onnxpb.NodeProto{{OpType: op, Name: out + "_" + name + "_n", Input: []string{v}, Output: []string{out + "_" + name + "_y"}}},
			Output: []*onnxpb.ValueInfoProto{tensorInfo(out+"_"+name+"_y", onnxio.Float, -1, -1, -1, -1)}}
		return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_GRAPH, G: g}
	}
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{OpType: "If", Name: out, Input: []string{out + "_cond"}, Output: []string{out},
		Attribute: []*onnxpb.AttributeProto{branch("then_branch", "Relu"), branch("else_branch", "Sigmoid")}})
	b.out(out)
}

func TestReviewPermute(t *testing.T) {
	relu := func(b *rb, x string) string { b.node("Relu", "r", []string{x}); return "r" }
	cases := []permCase{
		{name: "plain", groups: 1, model: base(13, nil, nil)},
		{name: "relu between, value_info on every value", groups: 1, model: base(13, relu, func(b *rb) {
			for _, v := range []string{"a", "r", "s"} {
				b.g.ValueInfo = append(b.g.ValueInfo, tensorInfo(v, onnxio.Float, 1, C, 8, 8))
			}
		})},
		{name: "every per-channel op in one chain", groups: 1, model: base(14, func(b *rb, x string) string {
			b.node("LeakyRelu", "l", []string{x}, flt("alpha", 0.3))
			b.node("HardSigmoid", "hs", []string{"l"}, flt("alpha", 0.3), flt("beta", 0.4))
			b.node("HardSwish", "hw", []string{"hs"})
			b.node("Tanh", "th", []string{"hw"})
			b.node("Sigmoid", "sg", []string{"th"})
			b.node("Identity", "id", []string{"sg"})
			b.bn("bn", "id", C)
			b.conv("dw", "bn", C, 1, 3, true, groupAttr(C), ints("pads", 1, 1, 1, 1), ints("dilations", 1, 1))
			b.scalar("lo", -0.5)
			b.node("Clip", "cl", []string{"dw", "lo", ""})
			return "cl"
		}, nil)},
		{name: "Elu and Selu (ONNX Runtime only)", groups: 1, noEngine: true, model: base(13, func(b *rb, x string) string {
			b.node("Elu", "e", []string{x}, flt("alpha", 0.7))
			b.node("Selu", "se", []string{"e"}, flt("alpha", 1.5), flt("gamma", 0.8))
			return "se"
		}, nil)},
		{name: "opset 9: Clip bounds as attributes", groups: 1, model: base(9, func(b *rb, x string) string {
			b.node("Clip", "cl", []string{x}, flt("min", -0.2), flt("max", 0.3))
			b.bn("bn", "cl", C)
			return "bn"
		}, nil)},
		{name: "Clip bounds graph inputs", groups: 0, model: base(13, func(b *rb, x string) string {
			b.scalar("lo", 0)
			b.g.Input = append(b.g.Input, tensorInfo("lo", onnxio.Float))
			b.node("Clip", "cl", []string{x, "lo"})
			return "cl"
		}, nil), check: unchanged("a_w", "a_b", "s_w")},
		{name: "Clip bound from a Constant node", groups: 0, model: base(13, func(b *rb, x string) string {
			b.g.Node = append(b.g.Node, &onnxpb.NodeProto{OpType: "Constant", Name: "k", Output: []string{"k"},
				Attribute: []*onnxpb.AttributeProto{{Name: "value", Type: onnxpb.AttributeProto_TENSOR, T: onnxio.NewFloat32("", nil, []float32{0.1})}}})
			b.node("Clip", "cl", []string{x, "k"})
			return "cl"
		}, nil)},
		{name: "producer and sink with kernels, strides, dilations, auto_pad", groups: 1, model: func() *onnxpb.ModelProto {
			b, model := newRB(13)
			b.conv("a", "in", C, C, 3, true, ints("strides", 2, 2), ints("dilations", 2, 2), ints("pads", 2, 2, 2, 2))
			b.conv("m", "a", C, C, 1, false)
			b.node("Relu", "r", []string{"m"})
			b.conv("s", "r", 5, C, 3, true, str("auto_pad", "SAME_UPPER"), ints("strides", 2, 1))
			b.out("s")
			return model()
		}},
		{name: "two sinks, one square, one wider with kernel 2", groups: 1, model: base(13, func(b *rb, x string) string {
			b.node("Relu", "r", []string{x})
			b.conv("s2", "r", 9, C, 2, false)
			b.out("s2")
			return "r"
		}, nil)},
		{name: "non-square chain relabeled through a square sink", groups: -1, model: func() *onnxpb.ModelProto {
			b, model := newRB(13)
			b.conv("a", "in", 8, C, 1, true)
			b.node("Relu", "r", []string{"a"})
			b.conv("s", "r", 8, 8, 1, true)
			b.conv("t", "s", 3, 8, 1, false)
			b.out("t")
			return model()
		}},
		{name: "three square convs in a row", groups: -1, model: func() *onnxpb.ModelProto {
			b, model := newRB(13)
			b.conv("a", "in", C, C, 1, true)
			b.conv("m", "a", C, C, 1, true)
			b.bn("bn", "m", C)
			b.conv("s", "bn", C, C, 1, true)
			b.out("s")
			return model()
		}},
		{name: "C = 1", groups: 0, model: func() *onnxpb.ModelProto {
			b, model := newRB(13)
			b.conv("a", "in", 1, C, 1, true)
			b.conv("m", "a", 1, 1, 1, true)
			b.conv("s", "m", 2, 1, 1, false)
			b.out("s")
			return model()
		}},
		{name: "rank at least C", groups: -1, opts: Options{Rank: func(c int) int { return c + 3 }}, model: base(13, relu, nil)},
		{name: "rank C-1", groups: -1, opts: Options{Rank: func(c int) int { return c - 1 }}, model: base(13, relu, nil)},

		// What must block a group.
		{name: "sink weight shared with another Conv", groups: 0, model: base(13, relu, func(b *rb) {
			b.node("Conv", "o", []string{"in", "s_w"})
			b.out("o")
		}), check: unchanged("a_w", "s_w")},
		{name: "producer bias shared with a depthwise conv's bias", groups: 0, model: base(13, func(b *rb, x string) string {
			b.w("dw_w", C, 1, 3, 3)
			b.node("Conv", "dw", []string{x, "dw_w", "a_b"}, groupAttr(C), ints("pads", 1, 1, 1, 1))
			return "dw"
		}, nil), check: unchanged("a_w", "a_b", "dw_w")},
		{name: "depthwise weight shared with another depthwise conv", groups: 0, model: base(13, func(b *rb, x string) string {
			b.w("dw_w", C, 1, 3, 3)
			b.node("Conv", "dw", []string{x, "dw_w"}, groupAttr(C), ints("pads", 1, 1, 1, 1))
			b.node("Conv", "dw2", []string{"in", "dw_w"}, groupAttr(C), ints("pads", 1, 1, 1, 1))
			b.out("dw2")
			return "dw"
		}, nil)},
		{name: "sink weight also a graph input (overridable)", groups: 0, model: base(13, relu, func(b *rb) {
			b.g.Input = append(b.g.Input, tensorInfo("s_w", onnxio.Float, C, C, 1, 1))
		}), check: unchanged("a_w", "s_w")},
		{name: "BN mean also a graph input (overridable)", groups: 0, model: base(13, func(b *rb, x string) string {
			b.bn("bn", x, C)
			b.g.Input = append(b.g.Input, tensorInfo("bn_m", onnxio.Float, C))
			return "bn"
		}, nil), check: unchanged("a_w", "bn_m", "s_w")},
		{name: "producer output a graph output", groups: 0, model: base(13, relu, func(b *rb) { b.out("a") }),
			check: unchanged("a_w", "a_b", "s_w")},
		{name: "sink output a graph output", groups: 1, model: base(13, relu, func(b *rb) { b.out("s") })},
		{name: "weight also a graph output", groups: 0, model: base(13, relu, func(b *rb) {
			b.g.Output = append(b.g.Output, tensorInfo("a_w", onnxio.Float, C, C, 1, 1))
		})},
		{name: "BN reads one tensor as scale and variance", groups: 0, model: base(13, func(b *rb, x string) string {
			b.pos("sv", C)
			b.w("sh", C)
			b.w("mu", C)
			b.node("BatchNormalization", "bn", []string{x, "sv", "sh", "mu", "sv"})
			return "bn"
		}, nil)},
		{name: "two BNs in two groups share a parameter", groups: -1, model: func() *onnxpb.ModelProto {
			b, model := newRB(13)
			b.conv("a", "in", C, C, 1, true)
			b.bn("bn1", "a", C)
			b.conv("m", "bn1", C, C, 1, true)
			b.w("sh2", C)
			b.w("mu2", C)
			b.node("BatchNormalization", "bn2", []string{"m", "bn1_s", "sh2", "mu2", "bn1_v"})
			b.conv("s", "bn2", C, C, 1, true)
			b.out("s")
			return model()
		}, check: unchanged("bn1_s", "bn1_v")},
		{name: "value read by a sink and a Mul", groups: 0, model: base(13, relu, func(b *rb) {
			b.node("Mul", "mul", []string{"r", "r"})
			b.out("mul")
		})},
		{name: "group value a graph output down the chain", groups: 0, model: base(13, relu, func(b *rb) { b.out("r") })},
		{name: "group value read as a Conv weight", groups: 0, model: func() *onnxpb.ModelProto {
			b, model := newRB(13)
			b.conv("a", "in", C, C, 1, true)
			b.node("Reshape", "flat", []string{"a", "shape"})
			b.g.Initializer = append(b.g.Initializer, onnxio.NewInt64("shape", []int64{4}, []int64{4, C, 4, 4}))
			b.node("Conv", "o", []string{"in", "flat"}, ints("strides", 2, 2))
			b.out("o")
			return model()
		}},
		{name: "If subgraph reads the group value", groups: 0, noEngine: true, model: base(13, relu, func(b *rb) { b.ifReading("ifo", "r") }),
			check: unchanged("a_w", "a_b", "s_w")},
		{name: "If subgraph reads the producer output", groups: 0, noEngine: true, model: base(13, nil, func(b *rb) { b.ifReading("ifo", "a") }),
			check: unchanged("a_w", "a_b", "s_w")},
		{name: "If nested in an If branch reads the group value", groups: 0, noEngine: true, model: base(13, relu, func(b *rb) {
			inner := &rb{builder: builder{g: &onnxpb.GraphProto{Name: "inner"}}}
			inner.ifReading("deep", "r")
			b.g.Initializer = append(b.g.Initializer, inner.g.Initializer...)
			inner.g.Initializer = nil
			inner.g.Node[0].Output[0] = "mid_y"
			inner.g.Output = []*onnxpb.ValueInfoProto{tensorInfo("mid_y", onnxio.Float, -1, -1, -1, -1)}
			b.g.Initializer = append(b.g.Initializer, &onnxpb.TensorProto{Name: "outer_cond", DataType: int32(onnxio.Bool), Int32Data: []int32{1}})
			b.g.Node = append(b.g.Node, &onnxpb.NodeProto{OpType: "If", Name: "outer", Input: []string{"outer_cond"}, Output: []string{"outer"},
				Attribute: []*onnxpb.AttributeProto{{Name: "then_branch", Type: onnxpb.AttributeProto_GRAPH, G: inner.g},
					{Name: "else_branch", Type: onnxpb.AttributeProto_GRAPH, G: &onnxpb.GraphProto{Name: "plain",
						Node:   []*onnxpb.NodeProto{{OpType: "Identity", Name: "pass", Input: []string{"in"}, Output: []string{"pass_y"}}},
						Output: []*onnxpb.ValueInfoProto{tensorInfo("pass_y", onnxio.Float, -1, -1, -1, -1)}}}}})
			b.out("outer")
		}), check: unchanged("a_w", "a_b", "s_w")},
		{name: "If branch returns the group value itself", groups: 0, noEngine: true, noORT: true, model: base(13, relu, func(b *rb) {
			b.ifReading("ifo", "r")
			n := b.g.Node[len(b.g.Node)-1]
			for _, a := range n.Attribute {
				a.G.Node = nil
				a.G.Output[0].Name = "r"
			}
		}), check: unchanged("a_w", "a_b", "s_w")},
		{name: "dead end: a Relu on the way read by nothing", groups: 1, model: base(13, relu, func(b *rb) {
			b.node("Sigmoid", "dead", []string{"r"})
		})},
		{name: "If subgraph reads the sink weight", groups: 0, noEngine: true, noORT: true, model: base(13, relu, func(b *rb) { b.ifReading("ifo", "s_w") }),
			check: unchanged("a_w", "a_b", "s_w")},
		{name: "weights in float_data, one sink square one not", groups: 1, model: base(13, relu, func(b *rb) {
			for _, x := range b.g.Initializer {
				v, err := onnxio.Float32s(x)
				if err != nil {
					panic(err)
				}
				x.RawData, x.FloatData = nil, v
			}
		})},
		{name: "float16 producer weight left alone", groups: 0, model: func() *onnxpb.ModelProto {
			b, model := newRB(13)
			b.node("Cast", "h", []string{"in"}, &onnxpb.AttributeProto{Name: "to", Type: onnxpb.AttributeProto_INT, I: int64(onnxio.Float16)})
			w := enginetest.Fill([]int{C * C}, 9)
			half := make([]int32, len(w))
			for i, v := range w {
				half[i] = int32(f16(v))
			}
			b.g.Initializer = append(b.g.Initializer, &onnxpb.TensorProto{Name: "a_w", Dims: []int64{C, C, 1, 1}, DataType: int32(onnxio.Float16), Int32Data: half})
			b.node("Conv", "a", []string{"h", "a_w"})
			b.node("Cast", "af", []string{"a"}, &onnxpb.AttributeProto{Name: "to", Type: onnxpb.AttributeProto_INT, I: int64(onnxio.Float)})
			b.conv("s", "af", C, C, 1, true)
			b.out("s")
			return model()
		}, noEngine: true, check: unchanged("a_w", "s_w")},
	}
	runPermCases(t, cases)
}

// f16 converts v (|v| ≤ 1, normal) to IEEE binary16 by truncation.
func f16(v float32) uint16 {
	bits := math.Float32bits(v)
	sign := uint16(bits>>16) & 0x8000
	exp := int((bits>>23)&0xff) - 127 + 15
	if exp <= 0 {
		return sign
	}
	return sign | uint16(exp)<<10 | uint16(bits>>13)&0x3ff
}

// TestReviewPermuteBadWeights: NaN or Inf in a weight, or nodes missing
// inputs, give an error or leave the model as it is, never a panic or a
// silently different function.
func TestReviewPermuteBadWeights(t *testing.T) {
	poison := func(name string, v float32) func(b *rb) {
		return func(b *rb) {
			for i, x := range b.g.Initializer {
				if x.GetName() == name {
					w, _ := onnxio.Float32s(x)
					w[3] = v
					b.g.Initializer[i] = onnxio.NewFloat32(name, x.GetDims(), w)
				}
			}
		}
	}
	for _, c := range []struct {
		name  string
		model func() *onnxpb.ModelProto
	}{
		{"NaN in a square weight", base(13, nil, poison("a_w", float32(math.NaN())))},
		{"Inf in a square weight", base(13, nil, poison("s_w", float32(math.Inf(1))))},
		{"NaN in a BN variance", base(13, func(b *rb, x string) string { b.bn("bn", x, C); return "bn" }, poison("bn_v", float32(math.NaN())))},
		{"huge weights", base(13, nil, func(b *rb) {
			for i, x := range b.g.Initializer {
				w, _ := onnxio.Float32s(x)
				for j := range w {
					w[j] *= 3e38
				}
				b.g.Initializer[i] = onnxio.NewFloat32(x.GetName(), x.GetDims(), w)
			}
		})},
		{"all-zero square weights", base(13, nil, func(b *rb) {
			for i, x := range b.g.Initializer {
				w, _ := onnxio.Float32s(x)
				b.g.Initializer[i] = onnxio.NewFloat32(x.GetName(), x.GetDims(), make([]float32, len(w)))
			}
		})},
		{"subnormal weights", base(13, nil, func(b *rb) {
			for i, x := range b.g.Initializer {
				w, _ := onnxio.Float32s(x)
				for j := range w {
					w[j] *= 1e-39
				}
				b.g.Initializer[i] = onnxio.NewFloat32(x.GetName(), x.GetDims(), w)
			}
		})},
		{"Conv without a weight", base(13, nil, func(b *rb) { b.g.Node[0].Input = b.g.Node[0].Input[:1] })},
		{"BN with three inputs", base(13, func(b *rb, x string) string {
			b.pos("bs", C)
			b.node("BatchNormalization", "bn", []string{x, "bs", ""})
			return "bn"
		}, nil)},
		{"sink with no output", base(13, nil, func(b *rb) { b.g.Node[1].Output = nil })},
		{"depthwise Conv with an empty weight name", base(13, func(b *rb, x string) string {
			b.node("Conv", "dw", []string{x, ""}, groupAttr(C))
			return "dw"
		}, nil)},
		{"weight with dims that do not match its data", base(13, nil, func(b *rb) {
			b.g.Initializer[0].Dims = []int64{C, C, 2, 1}
		})},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := c.model()
			p, _, err := Permute(context.Background(), m, Options{})
			if err != nil {
				t.Logf("error: %v", err)
				return
			}
			_, shapes := testutil.GraphInputs(m, 2)
			if _, err := engine.Compile(m, engine.Options{InputShapes: shapes, Threads: 1}); err != nil {
				return // not a valid model: not panicking is all
			}
			want, got := run(t, m), run(t, p)
			for k, w := range want {
				same := len(w.F) == len(got[k].F)
				for i := range w.F {
					a, b := w.F[i], got[k].F[i]
					same = same && (a == b || math.Abs(float64(a-b)) <= 1e-5*max(math.Abs(float64(a)), 1) || a != a && b != b)
				}
				if !same && relErr(got[k].F, w.F) > 1e-5 {
					t.Errorf("output %s differs", k)
				}
			}
		})
	}
}

// TestReviewPermuteExternal: a weight whose data lives in an external file
// is left alone, and the relabeled model still loads it.
func TestReviewPermuteExternal(t *testing.T) {
	rt := loadORT(t)
	if rt == nil {
		return
	}
	m := base(13, nil, nil)()
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig.onnx")
	if err := onnxio.Save(orig, m, onnxio.SaveOptions{ExternalData: true, ExternalThreshold: 100}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	ext := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(raw, ext); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, x := range ext.GetGraph().GetInitializer() {
		if onnxio.External(x) {
			n++
		}
	}
	if n == 0 {
		t.Fatal("no external tensor written")
	}
	p, rep, err := Permute(context.Background(), ext, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Groups != 0 {
		t.Errorf("%d groups relabeled with external weights", rep.Groups)
	}
	if !proto.Equal(p, ext) {
		t.Error("model with external weights changed")
	}
	enc, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	perm := filepath.Join(dir, "perm.onnx")
	if err := os.WriteFile(perm, enc, 0o644); err != nil {
		t.Fatal(err)
	}
	ortCompare(t, rt, m, orig, perm)
}

// TestReviewPermuteCancelled: a context cancelled before or during the
// work gives its error.
func TestReviewPermuteCancelled(t *testing.T) {
	m, err := onnxio.Load(testutil.Fixture(t, "mobilenetv1.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Permute(ctx, m, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

// TestReviewPermuteImageNet relabels the ImageNet-shaped models
// (MobileNetV2's linear bottlenecks, MobileNetV3's squeeze-excite Mul and
// HardSwish, ShuffleNetV2's channel shuffles) and compares them with the
// originals in ONNX Runtime; ONNX's checker sees each relabeled model.
func TestReviewPermuteImageNet(t *testing.T) {
	if testing.Short() {
		t.Skip("ImageNet-shaped models: not in -short")
	}
	rt := loadORT(t)
	if rt == nil {
		return
	}
	dir := t.TempDir()
	var written []string
	for _, name := range []string{"mobilenetv1_1.0.onnx", "mobilenetv2.onnx", "mobilenetv3_small.onnx", "shufflenetv2_x1.0.onnx"} {
		t.Run(name, func(t *testing.T) {
			path := testutil.ImageNetModel(t, name)
			m, err := onnxio.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			p, rep, err := Permute(context.Background(), m, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d groups relabeled", rep.Groups)
			if rep.Groups == 0 && len(rep.Layers) > 0 {
				// MobileNetV2 has no square pointwise layer to pair.
				t.Errorf("nothing relabeled, %d square layers", len(rep.Layers))
			}
			out := filepath.Join(dir, "perm_"+name)
			if err := onnxio.Save(out, p, onnxio.SaveOptions{}); err != nil {
				t.Fatal(err)
			}
			written = append(written, out)
			ortCompare(t, rt, m, path, out)
		})
	}
	testutil.CheckONNXAll(t, written)
}
