package probe

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"path/filepath"
	"testing"

	onnx "github.com/owulveryck/onnx-go"
	"github.com/owulveryck/onnx-go/backend/x/gorgonnx"
	"gorgonia.org/tensor"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// outcome is how far onnx-go got with one model.
type outcome struct {
	decoded, ran bool
	err          error
}

// tryOnnxGo decodes the serialized model with onnx-go's gorgonia backend
// and, if that works, runs it on x and returns the first output.
func tryOnnxGo(data []byte, x []float32, shape []int) (out []float32, res outcome) {
	defer func() {
		if r := recover(); r != nil {
			res.err = fmt.Errorf("panic: %v", r)
		}
	}()
	backend := gorgonnx.NewGraph()
	model := onnx.NewModel(backend)
	if err := model.UnmarshalBinary(data); err != nil {
		return nil, outcome{err: err}
	}
	res.decoded = true
	if err := model.SetInput(0, tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float32(nil), x...)))); err != nil {
		res.err = err
		return nil, res
	}
	if err := backend.Run(); err != nil {
		res.err = err
		return nil, res
	}
	outs, err := model.GetOutputTensors()
	if err != nil || len(outs) == 0 {
		res.err = fmt.Errorf("no output: %v", err)
		return nil, res
	}
	f, ok := outs[0].Data().([]float32)
	if !ok {
		res.err = fmt.Errorf("output of type %T", outs[0].Data())
		return nil, res
	}
	res.ran = true
	return f, res
}

// TestOnnxGoOnLprconvOutputs feeds onnx-go the MobileNetV1 and ShuffleNetV2
// fixtures as lprconv writes them (float32, original and LPR-compressed),
// at batch 1. It logs how far onnx-go gets and which operator stops it,
// and fails if onnx-go runs a model but disagrees with lprconv's engine
// (a silent wrong answer), or if it rejects a model without naming why.
func TestOnnxGoOnLprconvOutputs(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	x := make([]float32, 3*32*32)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for _, name := range []string{"mobilenetv1.onnx", "shufflenetv2.onnx"} {
		m, err := onnxio.Load(filepath.Join("..", "..", "testdata", "models", name))
		if err != nil {
			t.Fatal(err)
		}
		lpr, err := compress(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []struct {
			tag   string
			model *onnxpb.ModelProto
		}{{name, m}, {name + " LPR", lpr}} {
			data, err := onnxio.Encode(v.model)
			if err != nil {
				t.Fatal(err)
			}
			got, res := tryOnnxGo(data, x, []int{1, 3, 32, 32})
			switch {
			case res.ran:
				want := engineRun(t, v.model, x)
				for i := range want {
					if math.Abs(float64(got[i]-want[i])) > 1e-3*(1+math.Abs(float64(want[i]))) {
						t.Errorf("%s: onnx-go ran the model but logit %d is %g, lprconv's engine says %g", v.tag, i, got[i], want[i])
						break
					}
				}
				t.Logf("%s: onnx-go decodes and runs it, matching lprconv's engine", v.tag)
			case res.err == nil:
				t.Errorf("%s: onnx-go neither ran nor failed", v.tag)
			default:
				var ni *onnx.ErrNotImplemented
				if errors.As(res.err, &ni) {
					t.Logf("%s: decoded %v; stopped by operator %s (attribute %s=%v): %s", v.tag, res.decoded, ni.Operator, ni.AttributeName, ni.AttributeValue, ni.Message)
				} else {
					t.Logf("%s: decoded %v; stopped by: %v", v.tag, res.decoded, res.err)
				}
			}
		}
	}
}

func compress(m *onnxpb.ModelProto) (*onnxpb.ModelProto, error) {
	res, err := svd.ParseResidual("diag")
	if err != nil {
		return nil, err
	}
	plan, err := convert.NewPlan(context.Background(), m, svd.Policy{Ratio: 0.25, Multiple: 16}, res,
		convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4})
	if err != nil {
		return nil, err
	}
	return convert.Apply(m, plan)
}

func engineRun(t *testing.T, m *onnxpb.ModelProto, x []float32) []float32 {
	md, err := engine.NewModel(m, engine.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	out, err := md.Run(map[string]*engine.Tensor{"input": engine.NewTensorF(x, 1, 3, 32, 32)})
	if err != nil {
		t.Fatal(err)
	}
	return out["logits"].F
}

// TestOnnxGoGroupedConv isolates what stops onnx-go: MobileNetV1's first
// Conv (group 1) alone runs and matches lprconv's engine, its second, a
// depthwise Conv (group = channels), alone fails, because gorgonnx reads
// the group attribute but convolves as if it were 1.
func TestOnnxGoGroupedConv(t *testing.T) {
	m, err := onnxio.Load(filepath.Join("..", "..", "testdata", "models", "mobilenetv1.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	g := m.GetGraph()
	first := g.GetNode()[0] // Conv 3 -> 8, 3x3, stride 2
	var dw *onnxpb.NodeProto
	for _, n := range g.GetNode() {
		for _, a := range n.GetAttribute() {
			if n.GetOpType() == "Conv" && a.GetName() == "group" && a.GetI() > 1 && dw == nil {
				dw = n
			}
		}
	}
	if first.GetOpType() != "Conv" || dw == nil {
		t.Fatal("fixture layout changed: no leading Conv or no grouped Conv")
	}
	rng := rand.New(rand.NewSource(2))
	for _, c := range []struct {
		node    *onnxpb.NodeProto
		shape   []int
		wantRun bool
	}{{first, []int{1, 3, 32, 32}, true}, {dw, []int{1, 8, 16, 16}, false}} {
		sub := single(m, c.node, c.shape)
		n := 1
		for _, d := range c.shape {
			n *= d
		}
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		data, err := onnxio.Encode(sub)
		if err != nil {
			t.Fatal(err)
		}
		got, res := tryOnnxGo(data, x, c.shape)
		t.Logf("Conv %q (group %d): ran %v, error %v", c.node.GetName(), group(c.node), res.ran, res.err)
		if res.ran != c.wantRun {
			t.Fatalf("Conv %q: onnx-go ran it: %v, want %v (error %v)", c.node.GetName(), res.ran, c.wantRun, res.err)
		}
		if res.ran {
			md, err := engine.NewModel(sub, engine.Options{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			out, err := md.Run(map[string]*engine.Tensor{sub.GetGraph().GetInput()[0].GetName(): engine.NewTensorF(x, c.shape...)})
			md.Close()
			if err != nil {
				t.Fatal(err)
			}
			want := out[c.node.GetOutput()[0]].F
			if len(got) != len(want) {
				t.Fatalf("onnx-go gave %d values, the engine %d", len(got), len(want))
			}
			for i := range want {
				if math.Abs(float64(got[i]-want[i])) > 1e-3*(1+math.Abs(float64(want[i]))) {
					t.Fatalf("value %d: onnx-go %g, engine %g", i, got[i], want[i])
				}
			}
		}
	}
}

func group(n *onnxpb.NodeProto) int64 {
	for _, a := range n.GetAttribute() {
		if a.GetName() == "group" {
			return a.GetI()
		}
	}
	return 1
}

// single returns a model of the one node n of m, with its initializers, a
// float input of the given shape and its output as the graph output.
func single(m *onnxpb.ModelProto, n *onnxpb.NodeProto, shape []int) *onnxpb.ModelProto {
	dims := make([]*onnxpb.TensorShapeProto_Dimension, len(shape))
	for i, d := range shape {
		dims[i] = &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}}
	}
	vi := func(name string, dims []*onnxpb.TensorShapeProto_Dimension) *onnxpb.ValueInfoProto {
		tt := &onnxpb.TypeProto_Tensor{ElemType: int32(onnxio.Float)}
		if dims != nil {
			tt.Shape = &onnxpb.TensorShapeProto{Dim: dims}
		}
		return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: tt}}}
	}
	g := &onnxpb.GraphProto{Name: "single", Node: []*onnxpb.NodeProto{n}, Input: []*onnxpb.ValueInfoProto{vi(n.GetInput()[0], dims)},
		Output: []*onnxpb.ValueInfoProto{vi(n.GetOutput()[0], nil)}}
	for _, in := range m.GetGraph().GetInitializer() {
		for _, v := range n.GetInput()[1:] {
			if in.GetName() == v {
				g.Initializer = append(g.Initializer, in)
			}
		}
	}
	return &onnxpb.ModelProto{IrVersion: m.GetIrVersion(), OpsetImport: m.GetOpsetImport(), Graph: g}
}
