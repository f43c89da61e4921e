package fastform

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/chanperm"
	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/ortapi"
	"github.com/lprconv/lprconv/svd"
)

// Adversarial cases for folding a diag residual through a ReLU:
// Add(U(V x), D x) with x = act(a), a = producer(...), act Relu or
// LeakyRelu. Each runs in the engine and ONNX Runtime before and after
// Rewrite (runReview), and ONNX's checker sees every rewritten model.

// actModel builds in → producer → act → module(diag) → y. producer is
// "dw" (depthwise 3×3 with bias), "conv" (dense 3×3 with bias, stride 1,
// pads 1), "group2" (group-2 3×3 conv) or "bn"; act is an op type or
// "relu6" (Clip(0, 6)). edit, when set, changes the graph before the
// outputs are declared.
func actModel(producer, act string, diag []float32, edit func(b *builder)) func() *onnxpb.ModelProto {
	return func() *onnxpb.ModelProto {
		const C = 4
		b := newBuilder()
		b.input("in", C)
		switch producer {
		case "dw":
			b.floats("pw", []int64{C, 1, 3, 3}, ramp(C*9, 0.5))
			b.floats("pb", []int64{C}, ramp(C, 0.3))
			b.node("Conv", "a", []string{"in", "pw", "pb"}, aInt("group", C), aInts("pads", 1, 1, 1, 1))
		case "conv":
			b.floats("pw", []int64{C, C, 3, 3}, ramp(C*C*9, 0.3))
			b.floats("pb", []int64{C}, ramp(C, 0.3))
			b.node("Conv", "a", []string{"in", "pw", "pb"}, aInts("pads", 1, 1, 1, 1))
		case "group2":
			b.floats("pw", []int64{C, C / 2, 3, 3}, ramp(C*C/2*9, 0.4))
			b.node("Conv", "a", []string{"in", "pw"}, aInt("group", 2), aInts("pads", 1, 1, 1, 1))
		case "bn":
			b.bn("in", "a", C, "s", "t", "m", "v")
		}
		switch act {
		case "relu6":
			b.floats("lo", nil, []float32{0})
			b.floats("hi", nil, []float32{6})
			b.node("Clip", "x", []string{"a", "lo", "hi"})
		case "LeakyRelu":
			b.node("LeakyRelu", "x", []string{"a"}, &onnxpb.AttributeProto{Name: "alpha", Type: onnxpb.AttributeProto_FLOAT, F: 0.2})
		default:
			b.node(act, "x", []string{"a"})
		}
		b.module("x", "y", "V", "U", "D", diag)
		b.output("y")
		if edit != nil {
			edit(b)
		}
		return b.model(13)
	}
}

func TestReviewReluFold(t *testing.T) {
	pos := []float32{0.8, 1.3, 0.25, 0.05}
	const tol = 1e-5
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	cases := []reviewCase{
		{name: "depthwise conv, relu", folds: 1, tol: tol, model: actModel("dw", "Relu", pos, nil)},
		{name: "dense 3x3 conv, relu", folds: 1, tol: tol, model: actModel("conv", "Relu", pos, nil)},
		{name: "group-2 conv without bias, relu", folds: 1, tol: tol, model: actModel("group2", "Relu", pos, nil)},
		{name: "batch norm, relu", folds: 1, tol: tol, model: actModel("bn", "Relu", pos, nil)},
		{name: "depthwise conv, leaky relu", folds: 1, tol: tol, model: actModel("dw", "LeakyRelu", pos, nil)},
		{name: "batch norm, leaky relu", folds: 1, tol: tol, model: actModel("bn", "LeakyRelu", pos, nil)},
		{name: "large equal scales", folds: 1, tol: tol, model: actModel("dw", "Relu", []float32{1e15, 1e15, 1e15, 1e15}, nil)},
		{name: "ratio just above MinDiagRatio", folds: 1, tol: tol, model: actModel("dw", "Relu", []float32{1, 2e-4, 1, 1}, nil)},

		{name: "a zero scale", folds: 0, tol: tol, model: actModel("dw", "Relu", []float32{0.8, 0, 0.25, 1}, nil)},
		{name: "a negative zero scale", folds: 0, tol: tol, model: actModel("dw", "Relu", []float32{0.8, float32(math.Copysign(0, -1)), 0.25, 1}, nil)},
		{name: "a negative scale", folds: 0, tol: tol, model: actModel("dw", "Relu", []float32{0.8, -1.3, 0.25, 1}, nil)},
		{name: "all scales negative", folds: 0, tol: tol, model: actModel("bn", "Relu", []float32{-0.8, -1.3, -0.25, -1}, nil)},
		{name: "a NaN scale", folds: 0, tol: tol, model: actModel("dw", "Relu", []float32{0.8, nan, 0.25, 1}, nil)},
		{name: "an Inf scale", folds: 0, tol: tol, model: actModel("dw", "Relu", []float32{0.8, inf, 0.25, 1}, nil)},
		{name: "subnormal scales", folds: 0, tol: tol, model: actModel("dw", "Relu", []float32{1e-39, 2e-39, 1e-39, 3e-39}, nil)},
		{name: "ratio below MinDiagRatio", folds: 0, tol: tol, model: actModel("dw", "Relu", []float32{1, 1e-5, 1, 1}, nil)},
		{name: "producer rows times d overflow", folds: 0, tol: tol, model: actModel("conv", "Relu", []float32{1e10, 1e10, 1e10, 1e10}, func(b *builder) {
			for _, x := range b.g.Initializer {
				if x.GetName() == "pw" || x.GetName() == "pb" {
					v, _ := onnxio.Float32s(x)
					for i := range v {
						v[i] *= 1e30
					}
					nt := onnxio.NewFloat32(x.GetName(), x.GetDims(), v)
					proto.Reset(x)
					proto.Merge(x, nt)
				}
			}
		})},
		{name: "relu6 as Clip(0, 6) is not homogeneous", folds: 0, tol: tol, model: actModel("dw", "relu6", pos, nil)},
		{name: "sigmoid is not homogeneous", folds: 0, tol: tol, model: actModel("dw", "Sigmoid", pos, nil)},
		{name: "activation input read by another node", folds: 0, tol: tol, model: actModel("dw", "Relu", pos, func(b *builder) {
			b.node("Sigmoid", "side", []string{"a"})
			b.output("side")
		})},
		{name: "activation input a graph output", folds: 0, tol: tol, model: actModel("conv", "Relu", pos, func(b *builder) { b.output("a") })},
		{name: "activation output a graph output", folds: 0, tol: tol, model: actModel("dw", "Relu", pos, func(b *builder) { b.output("x") })},
		{name: "activation input a graph input", folds: 0, tol: tol, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.node("Relu", "x", []string{"in"})
			b.module("x", "y", "V", "U", "D", pos)
			b.output("y")
			return b.model(13)
		}},
		{name: "two activations in a row", folds: 0, tol: tol, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.floats("pw", []int64{4, 1, 3, 3}, ramp(36, 0.5))
			b.node("Conv", "a", []string{"in", "pw"}, aInt("group", 4), aInts("pads", 1, 1, 1, 1))
			b.node("Relu", "a2", []string{"a"})
			b.node("Relu", "x", []string{"a2"})
			b.module("x", "y", "V", "U", "D", pos)
			b.output("y")
			return b.model(13)
		}},
		{name: "producer weight shared with another conv", folds: 1, tol: tol, model: actModel("dw", "Relu", pos, func(b *builder) {
			b.node("Conv", "other", []string{"in", "pw", "pb"}, aInt("group", 4), aInts("pads", 1, 1, 1, 1))
			b.output("other")
		})},
		{name: "producer weight shared with the module's U (no bias)", folds: 1, tol: tol, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.floats("pw", []int64{4, 2, 1, 1}, ramp(8, 0.7))
			b.node("Conv", "h0", []string{"in", "pw"}, aInt("group", 2))
			b.node("Relu", "x", []string{"h0"})
			b.module("x", "y", "V", "pw", "D", pos)
			b.output("y")
			return b.model(13)
		}},
		{name: "batch norm reads one tensor as scale and variance", folds: 1, tol: tol, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.floats("sv", []int64{4}, []float32{1.5, 0.5, 2, 1.25})
			b.floats("t", []int64{4}, ramp(4, 0.3))
			b.floats("m", []int64{4}, ramp(4, 0.2))
			b.node("BatchNormalization", "a", []string{"in", "sv", "t", "m", "sv"})
			b.node("Relu", "x", []string{"a"})
			b.module("x", "y", "V", "U", "D", pos)
			b.output("y")
			return b.model(13)
		}},
		{name: "batch norm reads one tensor as scale and shift", folds: 1, tol: tol, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.floats("st", []int64{4}, []float32{1.5, -0.5, 2, 1.25})
			b.floats("m", []int64{4}, ramp(4, 0.2))
			b.floats("v", []int64{4}, []float32{1, 2, 0.5, 1.5})
			b.node("BatchNormalization", "a", []string{"in", "st", "st", "m", "v"})
			b.node("Relu", "x", []string{"a"})
			b.module("x", "y", "V", "U", "D", pos)
			b.output("y")
			return b.model(13)
		}},
		{name: "two modules share V, U, D behind two relus", folds: 2, tol: tol, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.bn("in", "a1", 4, "s", "t", "m", "v")
			b.bn("in", "a2", 4, "s", "t", "m", "v")
			b.node("Relu", "x1", []string{"a1"})
			b.node("LeakyRelu", "x2", []string{"a2"})
			b.module("x1", "y1", "V", "U", "D", pos)
			b.module("x2", "y2", "V", "U", "D", pos)
			b.output("y1", "y2")
			return b.model(13)
		}},
		{name: "module behind a module through a relu", folds: 1, tol: tol, model: func() *onnxpb.ModelProto {
			b := newBuilder()
			b.input("in", 4)
			b.bn("in", "a", 4, "s", "t", "m", "v")
			b.node("Relu", "x", []string{"a"})
			b.module("x", "y1", "V", "U", "D", pos)
			b.node("Relu", "x2", []string{"y1"})
			b.module("x2", "y", "V2", "U2", "D2", pos)
			b.output("y")
			return b.model(13)
		}},
		{name: "folds off", opts: Options{NoDiagFold: true}, folds: 0, pads: -1, shuffles: -1, model: actModel("dw", "Relu", pos, nil)},
	}
	runReview(t, cases)
}

// TestReviewReluFoldMalformed: an activation with two outputs or two
// inputs (not valid ONNX, so no runtime runs it) is not folded through,
// and Rewrite does not panic.
func TestReviewReluFoldMalformed(t *testing.T) {
	pos := []float32{0.8, 1.3, 0.25, 0.05}
	for _, c := range []struct {
		name string
		edit func(act *onnxpb.NodeProto)
	}{
		{"relu with two outputs", func(act *onnxpb.NodeProto) { act.Output = append(act.Output, "x_extra") }},
		{"relu with two inputs", func(act *onnxpb.NodeProto) { act.Input = append(act.Input, "a") }},
		{"relu with an empty input", func(act *onnxpb.NodeProto) { act.Input[0] = "" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := actModel("dw", "Relu", pos, nil)()
			for _, n := range m.GetGraph().GetNode() {
				if n.GetOpType() == "Relu" {
					c.edit(n)
				}
			}
			_, rep, err := Rewrite(m, Options{})
			if err != nil {
				t.Logf("error: %v", err)
				return
			}
			if len(rep.DiagFolds) != 0 {
				t.Errorf("%d diag folds through a malformed activation", len(rep.DiagFolds))
			}
		})
	}
}

// TestReviewReluFoldImageNet: on ImageNet-shaped models relabeled and
// compressed as data-free compress does it, residuals fold through ReLUs,
// and the rewritten model computes what the compressed one computes in
// ONNX Runtime.
func TestReviewReluFoldImageNet(t *testing.T) {
	if testing.Short() {
		t.Skip("ImageNet-shaped models: not in -short")
	}
	lib := testutil.RequireORT(t)
	if lib == "" {
		return
	}
	rt, err := ortapi.Load(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	dir := t.TempDir()
	var written []string
	for _, name := range []string{"mobilenetv1_1.0.onnx", "shufflenetv2_x1.0.onnx"} {
		t.Run(name, func(t *testing.T) {
			m, err := onnxio.Load(testutil.ImageNetModel(t, name))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			rule := svd.Policy{Ratio: 0.25, Multiple: 16}
			rank := func(c int) int { k, _, _ := rule.Choose(c, c, nil); return k }
			if m, _, err = chanperm.Permute(ctx, m, chanperm.Options{Rank: rank}); err != nil {
				t.Fatal(err)
			}
			plan, err := convert.NewPlan(ctx, m, rule, svd.KindDiag, convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4})
			if err != nil {
				t.Fatal(err)
			}
			if m, err = convert.Apply(m, plan); err != nil {
				t.Fatal(err)
			}
			f, rep, err := Rewrite(m, Options{})
			if err != nil {
				t.Fatal(err)
			}
			// Folds through an activation: the node folded into is not the
			// Add's input's producer.
			through := 0
			producer := map[string]*onnxpb.NodeProto{}
			for _, n := range m.GetGraph().GetNode() {
				for _, o := range n.GetOutput() {
					producer[o] = n
				}
			}
			for _, n := range m.GetGraph().GetNode() {
				if homogeneous[n.GetOpType()] && producer[n.GetInput()[0]] != nil {
					for _, fd := range rep.DiagFolds {
						if fd.Into == producer[n.GetInput()[0]].GetName() {
							through++
						}
					}
				}
			}
			t.Logf("%d diag folds, %d through an activation", len(rep.DiagFolds), through)
			// MobileNetV1's modules all read a ReLU's output; ShuffleNetV2's
			// read depthwise convolutions.
			if through == 0 && name == "mobilenetv1_1.0.onnx" || len(rep.DiagFolds) == 0 {
				t.Errorf("%d folds, %d through an activation", len(rep.DiagFolds), through)
			}
			a, b := filepath.Join(dir, "lpr_"+name), filepath.Join(dir, "fast_"+name)
			for p, mm := range map[string]*onnxpb.ModelProto{a: m, b: f} {
				if err := onnxio.Save(p, mm, onnxio.SaveOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			written = append(written, b)
			if e := ortDiff(t, rt, m, a, b, 2); e > 1e-4 {
				t.Errorf("ONNX Runtime: rewritten differs by %g", e)
			}
		})
	}
	testutil.CheckONNXAll(t, written)
}
