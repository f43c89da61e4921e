package fastform

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/internal/enginetest"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/ortapi"
	"github.com/lprconv/lprconv/shapefold"
	"github.com/lprconv/lprconv/svd"
)

// This file holds adversarial cases: graphs built to catch a rewrite that
// changes what a model computes, produces a model a runtime rejects, or is
// not stable when applied twice. Each case is run in the engine and, when
// a runtime is there, in ONNX Runtime, before and after Rewrite.

// dim is one dimension of a graph input: an int64 size or a string
// dim_param.
type dim any

// inputDims adds a float graph input with the given dimensions.
func (b *builder) inputDims(name string, dims ...dim) {
	var ds []*onnxpb.TensorShapeProto_Dimension
	for _, d := range dims {
		switch v := d.(type) {
		case string:
			ds = append(ds, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: v}})
		case int:
			ds = append(ds, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(v)}})
		}
	}
	b.g.Input = append(b.g.Input, &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxio.Float), Shape: &onnxpb.TensorShapeProto{Dim: ds}}}}})
}

// valueInfo records a float value_info entry of a fixed shape (the batch
// dimension named N).
func (b *builder) valueInfo(name string, dims ...int64) {
	ds := []*onnxpb.TensorShapeProto_Dimension{{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}}}
	for _, d := range dims {
		ds = append(ds, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	b.g.ValueInfo = append(b.g.ValueInfo, &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxio.Float), Shape: &onnxpb.TensorShapeProto{Dim: ds}}}}})
}

// has reports whether the graph already holds initializer name.
func (b *builder) has(name string) bool {
	for _, t := range b.g.GetInitializer() {
		if t.GetName() == name {
			return true
		}
	}
	return false
}

// floatsOnce adds initializer name unless it is there already.
func (b *builder) floatsOnce(name string, dims []int64, v []float32) {
	if !b.has(name) {
		b.floats(name, dims, v)
	}
}

// module adds an LPR module of width 4, rank 2 reading x and writing y,
// with weights named vName, uName (and its bias) and dName (holding diag),
// each added once.
func (b *builder) module(x, y, vName, uName, dName string, diag []float32) {
	const C, R = 4, 2
	b.floatsOnce(vName, []int64{R, C, 1, 1}, ramp(R*C, 1))
	b.floatsOnce(uName, []int64{C, R, 1, 1}, ramp(C*R, 0.7))
	b.floatsOnce(uName+"_b", []int64{C}, ramp(C, 0.2))
	b.floatsOnce(dName, []int64{C, 1, 1, 1}, diag)
	b.node("Conv", y+"/h", []string{x, vName})
	b.node("Conv", y+"/u", []string{y + "/h", uName, uName + "_b"})
	b.node("Conv", y+"/r", []string{x, dName}, aInt("group", C))
	b.node("Add", y, []string{y + "/u", y + "/r"})
}

// bn adds an inference BatchNormalization reading x and writing y with the
// named parameter tensors (each of width C, added once).
func (b *builder) bn(x, y string, C int64, scale, shift, mean, variance string) {
	b.floatsOnce(scale, []int64{C}, ramp(int(C), 1.2))
	b.floatsOnce(shift, []int64{C}, ramp(int(C), 0.3))
	b.floatsOnce(mean, []int64{C}, ramp(int(C), 0.2))
	v := ramp(int(C), 0.5)
	for i := range v {
		v[i] = 1 + v[i]*v[i]
	}
	b.floatsOnce(variance, []int64{C}, v)
	b.node("BatchNormalization", y, []string{x, scale, shift, mean, variance})
}

func aStr(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_STRING, S: []byte(v)}
}

// reviewCase is one constructed model and what Rewrite must make of it.
type reviewCase struct {
	name  string
	model func() *onnxpb.ModelProto
	opts  Options
	// shapes are the input shapes to compare at; nil: every dynamic
	// dimension 1, then 3.
	shapes []map[string][]int
	// shuffles, folds, pads are the counts Rewrite must report; -1: any.
	shuffles, folds, pads int
	// tol is the relative error allowed; 0: bit-identical.
	tol float64
}

// runShapes runs m in the engine at the given input shapes.
func runShapes(t *testing.T, m *onnxpb.ModelProto, shapes map[string][]int, seed uint64) map[string]*engine.Tensor {
	t.Helper()
	return enginetest.RunShapes(t, m, shapes, seed)
}

// sameOutputs fails unless got has want's outputs with their shapes and
// values to relative tolerance tol (0: bit for bit, NaN equal to NaN).
func sameOutputs(t *testing.T, what string, want, got map[string][]float32, wantShape, gotShape map[string][]int64, tol float64) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: output %s missing", what, k)
			continue
		}
		if !slices.Equal(wantShape[k], gotShape[k]) {
			t.Errorf("%s: output %s has shape %v, want %v", what, k, gotShape[k], wantShape[k])
			continue
		}
		var diff, scale float64
		for i := range w {
			a, b := float64(w[i]), float64(g[i])
			if math.IsNaN(a) || math.IsInf(a, 0) || math.IsNaN(b) || math.IsInf(b, 0) {
				if !(a == b || math.IsNaN(a) && math.IsNaN(b)) {
					t.Errorf("%s: %s[%d] = %g, want %g", what, k, i, b, a)
					break
				}
				continue
			}
			diff = math.Max(diff, math.Abs(a-b))
			scale = math.Max(scale, math.Abs(a))
		}
		if tol == 0 && diff != 0 || tol > 0 && diff > tol*scale {
			t.Errorf("%s: output %s differs by %.3g (scale %.3g)", what, k, diff, scale)
		}
	}
}

func engineFloats(out map[string]*engine.Tensor) (map[string][]float32, map[string][]int64) {
	v, s := map[string][]float32{}, map[string][]int64{}
	for k, t := range out {
		v[k] = t.F
		s[k] = testutil.Int64s(t.Shape)
	}
	return v, s
}

// runReview rewrites each case and compares the two models in the engine
// and ONNX Runtime; it checks that a second Rewrite changes nothing and
// that ONNX's checker accepts every rewritten model.
func runReview(t *testing.T, cases []reviewCase) {
	t.Helper()
	var rt *ortapi.Runtime
	if lib := testutil.RequireORT(t); lib != "" {
		r, err := ortapi.Load(lib)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rt = r
	}
	dir := t.TempDir()
	var written []string
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.model()
			if err := onnxio.Check(m); err != nil {
				t.Fatalf("test model: %v", err)
			}
			shapes := c.shapes
			if shapes == nil {
				for _, batch := range []int{1, 3} {
					_, s := testutil.GraphInputs(m, batch)
					shapes = append(shapes, s)
				}
			}
			shapeOutputs(t, m, shapes[0])
			before := proto.Clone(m)
			f, rep, err := Rewrite(m, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(m, before) {
				t.Fatal("Rewrite modified its input")
			}
			if err := onnxio.Check(f); err != nil {
				t.Fatalf("rewritten model: %v", err)
			}
			t.Logf("%s", rep)
			for _, cnt := range []struct {
				what      string
				got, want int
			}{{"shuffles", rep.Shuffles, c.shuffles}, {"diag folds", len(rep.DiagFolds), c.folds}, {"padded chains", len(rep.Padded), c.pads}} {
				if cnt.want >= 0 && cnt.got != cnt.want {
					t.Errorf("%d %s, want %d", cnt.got, cnt.what, cnt.want)
				}
			}
			again, rep2, err := Rewrite(f, c.opts)
			if err != nil {
				t.Fatalf("second Rewrite: %v", err)
			}
			if rep2.Changed() || !proto.Equal(again, f) {
				t.Errorf("second Rewrite changed the model again: %s", rep2)
			}
			if !slices.Equal(valueNames(m.GetGraph().GetInput()), valueNames(f.GetGraph().GetInput())) ||
				!slices.Equal(valueNames(m.GetGraph().GetOutput()), valueNames(f.GetGraph().GetOutput())) {
				t.Errorf("graph inputs %v outputs %v, were %v %v", valueNames(f.GetGraph().GetInput()), valueNames(f.GetGraph().GetOutput()),
					valueNames(m.GetGraph().GetInput()), valueNames(m.GetGraph().GetOutput()))
			}
			orig, fast := filepath.Join(dir, fmt.Sprintf("orig%d.onnx", ci)), filepath.Join(dir, fmt.Sprintf("fast%d.onnx", ci))
			for p, mm := range map[string]*onnxpb.ModelProto{orig: m, fast: f} {
				if err := onnxio.Save(p, mm, onnxio.SaveOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			written = append(written, orig, fast)
			for si, s := range shapes {
				want, ws := engineFloats(runShapes(t, m, s, uint64(si)+1))
				got, gs := engineFloats(runShapes(t, f, s, uint64(si)+1))
				sameOutputs(t, fmt.Sprintf("engine at %v", s), want, got, ws, gs, c.tol)
				if rt == nil {
					continue
				}
				in := map[string]ortapi.Tensor{}
				for name, sh := range s {
					in[name] = ortapi.Tensor{Shape: testutil.Int64s(sh), Data: enginetest.Fill(sh, uint64(si)+1)}
				}
				ow, err := ortRun(rt, orig, in)
				if err != nil {
					t.Fatalf("ONNX Runtime, original: %v", err)
				}
				og, err := ortRun(rt, fast, in)
				if err != nil {
					t.Fatalf("ONNX Runtime, rewritten: %v", err)
				}
				wv, wsh, gv, gsh := map[string][]float32{}, map[string][]int64{}, map[string][]float32{}, map[string][]int64{}
				for k, v := range ow {
					wv[k], wsh[k] = v.Data, v.Shape
				}
				for k, v := range og {
					gv[k], gsh[k] = v.Data, v.Shape
				}
				sameOutputs(t, fmt.Sprintf("ONNX Runtime at %v", s), wv, gv, wsh, gsh, c.tol)
			}
		})
	}
	testutil.CheckONNXAll(t, written)
}

func valueNames(vs []*onnxpb.ValueInfoProto) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.GetName())
	}
	return out
}

// shapeOutputs gives every graph output of m without a shape one of
// symbolic dimensions of the rank the engine computes at shapes (ONNX's
// checker wants a shape on every graph output).
func shapeOutputs(t *testing.T, m *onnxpb.ModelProto, shapes map[string][]int) {
	t.Helper()
	out := runShapes(t, m, shapes, 1)
	for _, o := range m.GetGraph().GetOutput() {
		tt := o.GetType().GetTensorType()
		if tt == nil || tt.GetShape() != nil {
			continue
		}
		var ds []*onnxpb.TensorShapeProto_Dimension
		for i := range out[o.GetName()].Shape {
			ds = append(ds, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: fmt.Sprintf("%s_%d", o.GetName(), i)}})
		}
		tt.Shape = &onnxpb.TensorShapeProto{Dim: ds}
	}
}

// shuffleGraph builds Concat(ins, axis 1) → Reshape(target) → Transpose
// (0, 2, 1, 3, 4) → tr, with tr a graph output.
func shuffleGraph(b *builder, ins []string, target []int64) {
	b.ints("target", target...)
	b.node("Concat", "cat", ins, aInt("axis", 1))
	b.node("Reshape", "r1", []string{"cat", "target"})
	b.node("Transpose", "tr", []string{"r1"}, aInts("perm", 0, 2, 1, 3, 4))
}

func TestReviewShuffle(t *testing.T) {
	plain := func(opset int64) func() *onnxpb.ModelProto {
		return func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("a", 4)
			b.input("b", 4)
			shuffleGraph(b, []string{"a", "b"}, []int64{0, 2, 4, 3, 3})
			b.output("tr")
			return b.model(opset)
		}
	}
	cases := []reviewCase{
		{name: "same input twice", shuffles: 1, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("a", 4)
			shuffleGraph(b, []string{"a", "a"}, []int64{0, 2, 4, 3, 3})
			b.output("tr")
			return b.model(13)
		}},
		{name: "an initializer among the inputs", shuffles: 1, shapes: []map[string][]int{{"a": {1, 4, 3, 3}}}, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.inputDims("a", 1, 4, 3, 3)
			b.floats("k", []int64{1, 4, 3, 3}, ramp(36, 1))
			shuffleGraph(b, []string{"k", "a"}, []int64{0, 2, 4, 3, 3})
			b.output("tr")
			return b.model(13)
		}},
		{name: "shuffled value read by several nodes and an output", shuffles: 1, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("a", 4)
			b.input("b", 4)
			shuffleGraph(b, []string{"a", "b"}, []int64{-1, 2, 4, 3, 3})
			b.node("Relu", "y1", []string{"tr"})
			b.node("Sigmoid", "y2", []string{"tr"})
			b.output("y1", "tr", "y2")
			return b.model(13)
		}},
		{name: "four groups", shuffles: 1, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			for _, n := range []string{"a", "b", "c", "d"} {
				b.input(n, 2)
			}
			shuffleGraph(b, []string{"a", "b", "c", "d"}, []int64{0, 4, 2, 3, 3})
			b.output("tr")
			return b.model(13)
		}},
		{name: "opset 11", shuffles: 1, model: plain(11)},
		{name: "opset 12", shuffles: 1, model: plain(12)},
		{name: "opset 13", shuffles: 1, model: plain(13)},
		{name: "opset 18", shuffles: 1, model: plain(18)},
		{name: "fresh names taken", shuffles: 1, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("a", 4)
			b.input("b", 4)
			// Values and nodes named as the rewrite names its own.
			b.node("Relu", "tr/unsqueeze_out", []string{"a"})
			b.node("Relu", "tr/unsqueeze_out_1", []string{"b"})
			b.node("Relu", "tr/interleave", []string{"a"})
			b.node("Relu", "tr/unsqueeze", []string{"b"})
			b.ints("tr/unsqueeze_axes", 1)
			shuffleGraph(b, []string{"tr/unsqueeze_out", "tr/unsqueeze_out_1"}, []int64{0, 2, 4, 3, 3})
			b.node("Add", "y", []string{"tr/interleave", "tr/unsqueeze"})
			b.output("tr", "y")
			return b.model(13)
		}},
		{name: "fresh name taken by a stray value_info", shuffles: 1, model: func() *onnxpb.ModelProto {
			m := plain(13)()
			b := &builder{g: m.GetGraph()}
			b.valueInfo("tr/unsqueeze_out", 9)
			b.valueInfo("tr/unsqueeze_out_1", 9)
			return m
		}},
		{name: "nodes without names", shuffles: 2, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("a", 4)
			b.input("b", 4)
			shuffleGraph(b, []string{"a", "b"}, []int64{0, 2, 4, 3, 3})
			b.ints("back", 0, 8, 3, 3)
			b.node("Reshape", "flat", []string{"tr", "back"})
			b.node("Split", "s", []string{"flat"}, aInt("axis", 1))
			b.g.Node[len(b.g.Node)-1].Output = []string{"s1", "s2"}
			b.node("Concat", "cat2", []string{"s1", "s2"}, aInt("axis", 1))
			b.node("Reshape", "r2", []string{"cat2", "target"})
			b.node("Transpose", "tr2", []string{"r2"}, aInts("perm", 0, 2, 1, 3, 4))
			b.output("tr2")
			for _, n := range b.g.Node {
				n.Name = ""
			}
			return b.model(13)
		}},
		{name: "dynamic height and width, target copying a dimension", shuffles: 0,
			shapes: []map[string][]int{{"a": {2, 4, 3, 5}, "b": {2, 4, 3, 5}}, {"a": {1, 4, 5, 2}, "b": {1, 4, 5, 2}}},
			model: func() *onnxpb.ModelProto {
				b := newBuilder()
				b.inputDims("a", "N", 4, "H", "W")
				b.inputDims("b", "N", 4, "H", "W")
				// 0 at index 3 copies W, so the Reshape makes
				// [N, 2, 4, W, H]: the shuffle only where H = W.
				shuffleGraph(b, []string{"a", "b"}, []int64{0, 2, 4, 0, -1})
				b.output("tr")
				return b.model(13)
			}},
		{name: "target copying a fixed dimension", shuffles: 1, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("a", 4)
			b.input("b", 4)
			shuffleGraph(b, []string{"a", "b"}, []int64{0, 2, 4, 0, -1})
			b.output("tr")
			return b.model(13)
		}},
		{name: "dynamic height, -1 for it", shuffles: 1,
			shapes: []map[string][]int{{"a": {2, 4, 5, 3}, "b": {2, 4, 5, 3}}, {"a": {1, 4, 2, 3}, "b": {1, 4, 2, 3}}},
			model: func() *onnxpb.ModelProto {
				b := newBuilder()
				b.inputDims("a", "N", 4, "H", 3)
				b.inputDims("b", "N", 4, "H", 3)
				shuffleGraph(b, []string{"a", "b"}, []int64{0, 2, 4, -1, 3})
				b.output("tr")
				return b.model(13)
			}},
		{name: "dynamic height and width, target from Shape", shuffles: 0,
			shapes: []map[string][]int{{"a": {2, 4, 3, 5}, "b": {2, 4, 3, 5}}},
			model: func() *onnxpb.ModelProto {
				b := newBuilder()
				b.inputDims("a", "N", 4, "H", "W")
				b.inputDims("b", "N", 4, "H", "W")
				b.floats("one", []int64{1}, []float32{1})
				// The exporter's form: [0, g, c, H, W] read from a
				// Shape (no constant target: left alone).
				b.node("Concat", "cat", []string{"a", "b"}, aInt("axis", 1))
				b.g.Node = append(b.g.Node, &onnxpb.NodeProto{OpType: "Shape", Name: "shp", Input: []string{"a"}, Output: []string{"shp"}})
				b.ints("i23", 2, 3)
				b.ints("head", 0, 2, 4)
				b.node("Gather", "hw", []string{"shp", "i23"})
				b.node("Concat", "target", []string{"head", "hw"}, aInt("axis", 0))
				b.node("Reshape", "r1", []string{"cat", "target"})
				b.node("Transpose", "tr", []string{"r1"}, aInts("perm", 0, 2, 1, 3, 4))
				b.output("tr")
				return b.model(13)
			}},
		{name: "rank-5 inputs", shapes: []map[string][]int{{"a": {2, 4, 3, 3, 1}, "b": {2, 4, 3, 3, 1}}}, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.inputDims("a", "N", 4, 3, 3, 1)
			b.inputDims("b", "N", 4, 3, 3, 1)
			shuffleGraph(b, []string{"a", "b"}, []int64{0, 2, 4, 3, 3})
			b.output("tr")
			return b.model(13)
		}},
		{name: "allowzero without a zero", shuffles: 1, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("a", 4)
			b.input("b", 4)
			shuffleGraph(b, []string{"a", "b"}, []int64{-1, 2, 4, 3, 3})
			b.g.Node[1].Attribute = append(b.g.Node[1].Attribute, aInt("allowzero", 1))
			b.output("tr")
			return b.model(14)
		}},
		{name: "unused initializer listed as a graph input", shuffles: 1, model: func() *onnxpb.ModelProto {
			m := plain(13)()
			b := &builder{g: m.GetGraph()}
			b.floats("extra", []int64{1}, []float32{1})
			b.inputDims("extra", 1)
			return m
		}},
		{name: "value_info on every value", shuffles: 1, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("a", 4)
			b.input("b", 4)
			shuffleGraph(b, []string{"a", "b"}, []int64{0, 2, 4, 3, 3})
			b.node("Relu", "y", []string{"tr"})
			b.valueInfo("cat", 8, 3, 3)
			b.valueInfo("r1", 2, 4, 3, 3)
			b.valueInfo("tr", 4, 2, 3, 3)
			b.output("y")
			return b.model(13)
		}},
	}
	runReview(t, cases)
}

func TestReviewDiagFold(t *testing.T) {
	d := []float32{0.8, -1.3, 0.25, -0.05}
	// bnModel: in → BatchNormalization with the named parameters → module.
	bnModel := func(scale, shift, mean, variance string) func() *onnxpb.ModelProto {
		return func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			// Fixed, positive values usable as any parameter.
			for _, n := range []string{"s", "t", "m", "v"} {
				b.floatsOnce(n, []int64{4}, []float32{1.5, 0.5, 2, 1.25})
			}
			b.bn("in", "x", 4, scale, shift, mean, variance)
			b.module("x", "y", "V", "U", "D", d)
			b.output("y")
			return b.model(13)
		}
	}
	// convModel: in → Conv(attrs) → module.
	convModel := func(w []int64, attrs ...*onnxpb.AttributeProto) func() *onnxpb.ModelProto {
		return func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			n := int(w[0] * w[1] * w[2] * w[3])
			b.floats("pw", w, ramp(n, 0.5))
			b.floats("pb", []int64{4}, ramp(4, 0.3))
			b.node("Conv", "x", []string{"in", "pw", "pb"}, attrs...)
			b.module("x", "y", "V", "U", "D", d)
			b.output("y")
			return b.model(13)
		}
	}
	// scaled: in → Mul(in, k) → Conv(weight scale w) → module with diag
	// dd, for values near the ends of float32's range.
	scaled := func(k, w, v float32, dd []float32) func() *onnxpb.ModelProto {
		return func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.floats("k", []int64{1}, []float32{k})
			b.node("Mul", "in_k", []string{"in", "k"})
			b.floats("pw", []int64{4, 1, 3, 3}, ramp(36, w))
			b.node("Conv", "x", []string{"in_k", "pw"}, aInt("group", 4), aInts("pads", 1, 1, 1, 1))
			b.floats("V", []int64{2, 4, 1, 1}, ramp(8, v))
			b.module("x", "y", "V", "U", "D", dd)
			b.output("y")
			return b.model(13)
		}
	}
	const tol = 2e-6
	cases := []reviewCase{
		{name: "batch norm, scale and variance one tensor", folds: 1, tol: tol, model: bnModel("s", "t", "m", "s")},
		{name: "batch norm, scale and shift one tensor", folds: 1, tol: tol, model: bnModel("s", "s", "m", "v")},
		{name: "batch norm, shift and mean one tensor", folds: 1, tol: tol, model: bnModel("s", "t", "t", "v")},
		{name: "batch norm, scale and mean one tensor", folds: 1, tol: tol, model: bnModel("s", "t", "s", "v")},
		{name: "batch norm, distinct parameters", folds: 1, tol: tol, model: bnModel("s", "t", "m", "v")},
		{name: "grouped strided dilated conv producer", folds: 1, tol: tol,
			model: convModel([]int64{4, 2, 3, 3}, aInt("group", 2), aInts("strides", 2, 2), aInts("dilations", 2, 2), aInts("pads", 2, 2, 2, 2))},
		{name: "auto_pad SAME_UPPER producer", folds: 1, tol: tol,
			model: convModel([]int64{4, 4, 2, 2}, aStr("auto_pad", "SAME_UPPER"))},
		{name: "strided 1x1 producer", folds: 1, tol: tol,
			model: convModel([]int64{4, 4, 1, 1}, aInts("strides", 2, 2))},
		{name: "two modules share V, U and D", folds: 2, tol: tol, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.floats("pw", []int64{4, 1, 3, 3}, ramp(36, 0.5))
			b.node("Conv", "x1", []string{"in", "pw"}, aInt("group", 4), aInts("pads", 1, 1, 1, 1))
			b.bn("in", "x2", 4, "s", "t", "m", "v")
			b.module("x1", "y1", "V", "U", "D", d)
			b.module("x2", "y2", "V", "U", "D", d)
			b.output("y1", "y2")
			return b.model(13)
		}},
		{name: "two batch norm producers share their parameters", folds: 2, tol: tol, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.input("in2", 4)
			b.bn("in", "x1", 4, "s", "t", "m", "v")
			b.bn("in2", "x2", 4, "s", "t", "m", "v")
			b.bn("in2", "x3", 4, "s", "t", "m", "v") // and a third, not folded
			b.module("x1", "y1", "V", "U", "D", d)
			b.module("x2", "y2", "V", "U", "D2", []float32{-2, 0.5, 3, 1})
			b.output("y1", "y2", "x3")
			return b.model(13)
		}},
		{name: "producer weight is the residual's weight", folds: 1, tol: tol, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.floats("D", []int64{4, 1, 1, 1}, d)
			b.node("Conv", "x", []string{"in", "D"}, aInt("group", 4))
			b.module("x", "y", "V", "U", "D", d)
			b.output("y")
			return b.model(13)
		}},
		{name: "producer weight is V", folds: 1, tol: tol, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			// A 1x1 producer 4 → 4 and V of rank 4 share one tensor.
			b.floats("W", []int64{4, 4, 1, 1}, ramp(16, 0.9))
			b.node("Conv", "x", []string{"in", "W"})
			b.floats("U", []int64{4, 4, 1, 1}, ramp(16, 0.7))
			b.floats("U_b", []int64{4}, ramp(4, 0.2))
			b.floats("D", []int64{4, 1, 1, 1}, d)
			b.node("Conv", "y/h", []string{"x", "W"})
			b.node("Conv", "y/u", []string{"y/h", "U", "U_b"})
			b.node("Conv", "y/r", []string{"x", "D"}, aInt("group", 4))
			b.node("Add", "y", []string{"y/u", "y/r"})
			b.output("y")
			return b.model(13)
		}},
		{name: "V with a 3x3 kernel of its weight (no kernel_shape)", folds: 0, tol: tol, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.bn("in", "x", 4, "s", "t", "m", "v")
			// V makes [N, 2, 1, 1], broadcast in the Add.
			b.floats("V", []int64{2, 4, 3, 3}, ramp(72, 1))
			b.module("x", "y", "V", "U", "D", d)
			b.output("y")
			return b.model(13)
		}},
		{name: "producer read by a second module", folds: 0, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.bn("in", "x", 4, "s", "t", "m", "v")
			b.module("x", "y1", "V", "U", "D", d)
			b.module("x", "y2", "V", "U", "D", d)
			b.output("y1", "y2")
			return b.model(13)
		}},
		{name: "producer weights overflow when scaled", folds: 0, tol: tol, model: scaled(1e-10, 1e20, 1, []float32{1e20, 2e20, -1e20, 1.5e20})},
		{name: "V columns overflow when divided", folds: 0, tol: tol, model: scaled(1, 1, 1e30, []float32{1e-9, 2e-9, -1e-9, 1.5e-9})},
		{name: "subnormal diag", folds: 0, model: scaled(1, 1, 1, []float32{1e-39, 2e-39, -1e-39, 1.5e-39})},
		{name: "NaN in diag", folds: 0, tol: tol, model: scaled(1, 1, 1, []float32{1, float32(math.NaN()), 1, 1})},
		{name: "Inf in diag", folds: 0, tol: tol, model: scaled(1, 1, 1, []float32{1, float32(math.Inf(-1)), 1, 1})},
		{name: "large equal diag", folds: 1, tol: tol, model: scaled(1, 1, 1, []float32{1e15, 1e15, -1e15, 1e15})},
		{name: "weights in float_data", folds: 1, tol: tol, model: func() *onnxpb.ModelProto {
			m := bnModel("s", "t", "m", "v")()
			for _, ts := range m.GetGraph().GetInitializer() {
				if ts.GetDataType() == int32(onnxio.Float) {
					v, _ := onnxio.Float32s(ts)
					ts.RawData, ts.FloatData = nil, v
				}
			}
			return m
		}},
		{name: "producer is the tail of a padded chain", folds: 1, pads: 1, tol: tol, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.floats("hw", []int64{6, 4, 1, 1}, ramp(24, 0.6))
			b.node("Conv", "h", []string{"in", "hw"})
			b.node("Relu", "hr", []string{"h"})
			b.floats("dw", []int64{6, 1, 3, 3}, ramp(54, 0.4))
			b.node("Conv", "dwo", []string{"hr", "dw"}, aInt("group", 6), aInts("pads", 1, 1, 1, 1))
			b.floats("tw", []int64{4, 6, 3, 3}, ramp(216, 0.3))
			b.floats("tb", []int64{4}, ramp(4, 0.3))
			b.node("Conv", "x", []string{"dwo", "tw", "tb"}, aInts("pads", 1, 1, 1, 1))
			b.module("x", "y", "V", "U", "D", d)
			b.output("y")
			return b.model(13)
		}},
		{name: "depthwise conv and batch norm producer (ShuffleNet form)", folds: 1, pads: 0, tol: tol, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.floats("hw", []int64{4, 4, 1, 1}, ramp(16, 0.6))
			b.node("Conv", "h", []string{"in", "hw"})
			b.floats("dw", []int64{4, 1, 3, 3}, ramp(36, 0.4))
			b.node("Conv", "dwo", []string{"h", "dw"}, aInt("group", 4), aInts("pads", 1, 1, 1, 1))
			b.bn("dwo", "x", 4, "s", "t", "m", "v")
			b.module("x", "y", "V", "U", "D", d)
			b.output("y")
			return b.model(13)
		}},
		{name: "folds off: residual conv is no padded chain", opts: Options{NoDiagFold: true}, folds: 0, pads: 0, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.floats("hw", []int64{4, 4, 1, 1}, ramp(16, 0.6))
			b.node("Conv", "x", []string{"in", "hw"})
			b.module("x", "y", "V", "U", "D", d)
			b.output("y")
			return b.model(13)
		}},
	}
	runReview(t, cases)
}

// layer is one Conv of convs: its weight's dims and its attributes.
type layer struct {
	w     []int64
	attrs []*onnxpb.AttributeProto
}

// convs builds in (4 channels) → one Conv per layer, without biases → y.
func convs(layers ...layer) func() *onnxpb.ModelProto {
	return func() *onnxpb.ModelProto {
		b := newBuilder()
		b.input("in", 4)
		v := "in"
		for i, l := range layers {
			w, out := fmt.Sprintf("w%d", i), fmt.Sprintf("c%d", i)
			if i == len(layers)-1 {
				out = "y"
			}
			b.floats(w, l.w, ramp(int(l.w[0]*l.w[1]*l.w[2]*l.w[3]), 0.6-0.1*float32(i)))
			b.node("Conv", out, []string{v, w}, l.attrs...)
			v = out
		}
		b.output("y")
		return b.model(13)
	}
}

func TestReviewPad(t *testing.T) {
	// chain: in(4) → head Conv(4 → C, kernel hk) → Relu → depthwise
	// Conv(C) → tail Conv(C → 5).
	chain := func(C int64, hk int64, headAttrs ...*onnxpb.AttributeProto) func() *onnxpb.ModelProto {
		return func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.floats("hw", []int64{C, 4, hk, hk}, ramp(int(C*4*hk*hk), 0.6))
			b.floats("hb", []int64{C}, ramp(int(C), 0.2))
			b.node("Conv", "h", []string{"in", "hw", "hb"}, headAttrs...)
			b.node("Relu", "hr", []string{"h"})
			b.floats("dw", []int64{C, 1, 3, 3}, ramp(int(C)*9, 0.4))
			b.node("Conv", "d", []string{"hr", "dw"}, aInt("group", C), aInts("pads", 1, 1, 1, 1))
			b.floats("tw", []int64{5, C, 1, 1}, ramp(5*int(C), 0.5))
			b.node("Conv", "y", []string{"d", "tw"})
			b.output("y")
			return b.model(13)
		}
	}
	cases := []reviewCase{
		{name: "one channel, no group attribute", pads: 0, model: convs(
			layer{w: []int64{1, 4, 1, 1}},
			layer{w: []int64{1, 1, 3, 3}, attrs: []*onnxpb.AttributeProto{aInts("pads", 1, 1, 1, 1)}},
			layer{w: []int64{5, 1, 1, 1}})},
		{name: "one channel, two single-channel convs", pads: 0, model: convs(
			layer{w: []int64{1, 4, 1, 1}},
			layer{w: []int64{1, 1, 3, 3}, attrs: []*onnxpb.AttributeProto{aInt("group", 1), aInts("pads", 1, 1, 1, 1)}},
			layer{w: []int64{1, 1, 3, 3}, attrs: []*onnxpb.AttributeProto{aInt("group", 1), aInts("pads", 1, 1, 1, 1)}},
			layer{w: []int64{5, 1, 1, 1}})},
		{name: "3x3 head with padding", pads: 1, tol: 1e-6, model: chain(6, 3, aInts("pads", 1, 1, 1, 1))},
		{name: "strided head", pads: 1, tol: 1e-6, model: chain(7, 1, aInts("strides", 2, 2))},
		{name: "grouped head", pads: 0, model: convs(
			layer{w: []int64{6, 2, 1, 1}, attrs: []*onnxpb.AttributeProto{aInt("group", 2)}},
			layer{w: []int64{6, 1, 3, 3}, attrs: []*onnxpb.AttributeProto{aInt("group", 6), aInts("pads", 1, 1, 1, 1)}},
			layer{w: []int64{5, 6, 1, 1}})},
		{name: "channel multiplier 2", pads: 0, model: convs(
			layer{w: []int64{3, 4, 1, 1}},
			layer{w: []int64{6, 1, 3, 3}, attrs: []*onnxpb.AttributeProto{aInt("group", 3), aInts("pads", 1, 1, 1, 1)}},
			layer{w: []int64{5, 6, 1, 1}})},
		{name: "batch norm parameters shared with biases and another chain", pads: 2, tol: 1e-6, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			for _, k := range []string{"1", "2"} {
				b.floatsOnce("hw", []int64{6, 4, 1, 1}, ramp(24, 0.6))
				b.floatsOnce("hb", []int64{6}, ramp(6, 0.2))
				b.node("Conv", "h"+k, []string{"in", "hw", "hb"})
				// The BatchNorm's shift is the head's bias, its mean
				// the depthwise bias; both chains share them all.
				b.floatsOnce("db", []int64{6}, ramp(6, 0.1))
				b.bn("h"+k, "n"+k, 6, "bs", "hb", "db", "bv")
				b.floatsOnce("dw", []int64{6, 1, 3, 3}, ramp(54, 0.4))
				b.node("Conv", "d"+k, []string{"n" + k, "dw", "db"}, aInt("group", 6), aInts("pads", 1, 1, 1, 1))
				b.floatsOnce("tw", []int64{5, 6, 1, 1}, ramp(30, 0.5))
				b.node("Conv", "y"+k, []string{"d" + k, "tw", "tb"})
				b.floatsOnce("tb", []int64{5}, ramp(5, 0.1))
				b.output("y" + k)
			}
			return b.model(13)
		}},
		{name: "value_info on the chain", pads: 1, tol: 1e-6, model: func() *onnxpb.ModelProto {
			m := chain(6, 1)()
			b := &builder{g: m.GetGraph()}
			b.valueInfo("h", 6, 3, 3)
			b.valueInfo("hr", 6, 3, 3)
			b.valueInfo("d", 6, 3, 3)
			b.valueInfo("y", 5, 3, 3)
			return m
		}},
		{name: "head and tail share one initializer", pads: 1, tol: 1e-6, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 6)
			b.floats("w", []int64{6, 6, 1, 1}, ramp(36, 0.6))
			b.node("Conv", "h", []string{"in", "w"})
			b.floats("dw", []int64{6, 1, 3, 3}, ramp(54, 0.4))
			b.node("Conv", "d", []string{"h", "dw"}, aInt("group", 6), aInts("pads", 1, 1, 1, 1))
			b.node("Conv", "y", []string{"d", "w"})
			b.output("y")
			return b.model(13)
		}},
		{name: "tail of one chain is the head of the next", pads: 2, tol: 1e-6, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.floats("hw", []int64{6, 4, 1, 1}, ramp(24, 0.6))
			b.node("Conv", "h", []string{"in", "hw"})
			b.floats("dw", []int64{6, 1, 3, 3}, ramp(54, 0.4))
			b.node("Conv", "d", []string{"h", "dw"}, aInt("group", 6), aInts("pads", 1, 1, 1, 1))
			b.floats("mw", []int64{5, 6, 3, 3}, ramp(270, 0.3))
			b.floats("mb", []int64{5}, ramp(5, 0.3))
			b.node("Conv", "mid", []string{"d", "mw", "mb"}, aInts("pads", 1, 1, 1, 1))
			b.floats("dw2", []int64{5, 1, 3, 3}, ramp(45, 0.4))
			b.node("Conv", "d2", []string{"mid", "dw2"}, aInt("group", 5), aInts("pads", 1, 1, 1, 1))
			b.floats("tw", []int64{4, 5, 1, 1}, ramp(20, 0.5))
			b.node("Conv", "y", []string{"d2", "tw"})
			b.output("y")
			return b.model(13)
		}},
		{name: "chain value read twice", pads: 0, model: func() *onnxpb.ModelProto {
			m := chain(6, 1)()
			b := &builder{g: m.GetGraph()}
			b.node("Add", "y2", []string{"d", "d"})
			b.output("y2")
			return m
		}},
		{name: "initializers listed as graph inputs", pads: 0, model: func() *onnxpb.ModelProto {
			m := chain(6, 1)()
			for _, ts := range m.GetGraph().GetInitializer() {
				b := &builder{g: &onnxpb.GraphProto{}}
				b.inputDims(ts.GetName())
				vi := b.g.Input[0]
				var sd []*onnxpb.TensorShapeProto_Dimension
				for _, d := range ts.GetDims() {
					sd = append(sd, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
				}
				vi.Type.GetTensorType().Shape = &onnxpb.TensorShapeProto{Dim: sd}
				m.Graph.Input = append(m.Graph.Input, vi)
			}
			return m
		}},
	}
	runReview(t, cases)
}

// TestReviewImageNetModels: on every ImageNet-shaped model as compress
// hands it over (shape arithmetic folded), and on ShuffleNetV2 x1.0 with
// LPR modules (shuffles, folds and their producers in one model), Rewrite's output passes ONNX's
// checker, a second Rewrite changes nothing, and ONNX Runtime loads it and
// gives the original's outputs.
func TestReviewImageNetModels(t *testing.T) {
	lib := testutil.RequireORT(t)
	rt, err := ortapi.Load(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	dir := t.TempDir()
	var written []string
	for _, name := range []string{"mobilenetv1_1.0.onnx", "mobilenetv2.onnx", "mobilenetv3_small.onnx", "shufflenetv2_x1.0.onnx", "compressed shufflenetv2_x1.0.onnx"} {
		t.Run(name, func(t *testing.T) {
			file, lpr := strings.CutPrefix(name, "compressed ")
			m, err := onnxio.Load(testutil.ImageNetModel(t, file))
			if err != nil {
				t.Fatal(err)
			}
			if lpr {
				// As data-free compress does by default.
				plan, err := convert.NewPlan(context.Background(), m, svd.Policy{Ratio: 0.25, Multiple: 16}, svd.KindDiag, convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4})
				if err != nil {
					t.Fatal(err)
				}
				if m, err = convert.Apply(m, plan); err != nil {
					t.Fatal(err)
				}
			}
			folded, _, err := shapefold.Fold(m)
			if err != nil {
				t.Fatal(err)
			}
			f, rep, err := Rewrite(folded, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", rep)
			if twice, rep2, err := Rewrite(f, Options{}); err != nil || rep2.Changed() || !proto.Equal(twice, f) {
				t.Errorf("Rewrite of its own output: %s, %v", rep2, err)
			}
			if lpr && (rep.Shuffles != 16 || len(rep.DiagFolds) == 0 || len(rep.Padded) == 0) {
				t.Errorf("report %s: want 16 shuffles, diag folds and padded chains", rep)
			}
			orig, fast := filepath.Join(dir, "orig_"+file), filepath.Join(dir, "fast_"+file)
			if lpr {
				orig, fast = filepath.Join(dir, "orig_lpr_"+file), filepath.Join(dir, "fast_lpr_"+file)
			}
			for p, mm := range map[string]*onnxpb.ModelProto{orig: m, fast: f} {
				if err := onnxio.Save(p, mm, onnxio.SaveOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			written = append(written, fast)
			if e := ortDiff(t, rt, m, orig, fast, 1); e > 1e-5 {
				t.Errorf("relative difference %.3g", e)
			}
		})
	}
	testutil.CheckONNXAll(t, written)
}

// TestReviewMalformed: Rewrite never panics on a malformed graph (it runs
// on user-supplied models) and rewrites nothing it cannot read or that
// fails at run time: nodes without outputs, missing inputs, a Reshape that
// cannot run, a BatchNorm in training mode, weights in external data.
func TestReviewMalformed(t *testing.T) {
	cases := []struct {
		name  string
		model func() *onnxpb.ModelProto
	}{
		{"transpose without outputs", func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("a", 4)
			b.input("b", 4)
			shuffleGraph(b, []string{"a", "b"}, []int64{0, 2, 4, 3, 3})
			b.g.Node[2].Output, b.g.Node[2].Name = nil, ""
			return b.model(13)
		}},
		{"depthwise conv without outputs", func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.floats("hw", []int64{6, 4, 1, 1}, ramp(24, 0.6))
			b.node("Conv", "h", []string{"in", "hw"})
			b.floats("dw", []int64{6, 1, 3, 3}, ramp(54, 0.4))
			b.node("Conv", "d", []string{"h", "dw"}, aInt("group", 6))
			b.g.Node[1].Output = nil
			return b.model(13)
		}},
		{"module nodes with missing inputs", func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.bn("in", "x", 4, "s", "t", "m", "v")
			b.module("x", "y", "V", "U", "D", []float32{1, 2, 3, 4})
			for _, n := range b.g.Node {
				if n.GetOpType() == "Conv" {
					n.Input = n.Input[:1]
				}
			}
			b.g.Node = append(b.g.Node, &onnxpb.NodeProto{OpType: "Add", Input: []string{"y"}, Output: []string{"z"}})
			b.g.Node = append(b.g.Node, &onnxpb.NodeProto{OpType: "Transpose", Output: []string{"w"}, Attribute: []*onnxpb.AttributeProto{aInts("perm", 0, 2, 1, 3, 4)}})
			b.output("y")
			return b.model(13)
		}},
		{"allowzero with a 0 in the target (fails at run time)", func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("a", 4)
			b.input("b", 4)
			shuffleGraph(b, []string{"a", "b"}, []int64{0, 2, 4, 3, 3})
			b.g.Node[1].Attribute = append(b.g.Node[1].Attribute, aInt("allowzero", 1))
			b.output("tr")
			return b.model(14)
		}},
		{"batch norm producer in training mode", func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.bn("in", "x", 4, "s", "t", "m", "v")
			b.g.Node[0].Attribute = append(b.g.Node[0].Attribute, aInt("training_mode", 1))
			b.module("x", "y", "V", "U", "D", []float32{1, 2, 3, 4})
			b.output("y")
			return b.model(15)
		}},
		{"residual weight in external data", func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.bn("in", "x", 4, "s", "t", "m", "v")
			b.module("x", "y", "V", "U", "D", []float32{1, 2, 3, 4})
			b.output("y")
			for _, ts := range b.g.Initializer {
				if ts.GetName() == "D" {
					ts.RawData = nil
					ts.DataLocation = onnxpb.TensorProto_EXTERNAL
					ts.ExternalData = []*onnxpb.StringStringEntryProto{{Key: "location", Value: "d.bin"}}
				}
			}
			return b.model(13)
		}},
		{"empty graph", func() *onnxpb.ModelProto { return newBuilder().model(13) }},
		{"no graph", func() *onnxpb.ModelProto { return &onnxpb.ModelProto{} }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("Rewrite panics: %v", r)
				}
			}()
			if _, rep, _ := Rewrite(c.model(), Options{}); rep.Changed() {
				t.Errorf("rewrote %s", rep)
			}
		})
	}
}
