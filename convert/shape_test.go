package convert

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// shuffleBlock builds a ShuffleNetV2-style unit the way PyTorch exports it
// with a dynamic batch: the channel split is a Slice whose bounds come
// from Shape -> Gather -> Add -> Div -> Mul, and the channel shuffle a
// Reshape whose target is Shape -> Gather -> Div -> Cast -> Unsqueeze ->
// Concat. Opset 13 passes Unsqueeze axes as an input, opset 11 as an
// attribute.
func shuffleBlock(b *builder, x string, c int64, opset int64) string {
	unsq := func(v string) string {
		if opset >= 13 {
			return b.op("Unsqueeze", []string{v, b.constant([]int64{1}, 0)})
		}
		return b.op("Unsqueeze", []string{v}, aInts("axes", 0))
	}
	// channel split of x (C channels) into two halves
	shp := b.op("Shape", []string{x})
	ch := b.op("Gather", []string{shp, b.constant([]int64{1}, 1)}, aInt("axis", 0))
	half := b.op("Div", []string{b.op("Add", []string{ch, b.constant([]int64{1}, 1)}), b.constant([]int64{1}, 2)})
	end1 := b.op("Mul", []string{half, b.constant([]int64{1}, 1)})
	end2 := b.op("Mul", []string{half, b.constant([]int64{1}, 2)})
	axes := b.constant([]int64{1}, 1)
	left := b.op("Slice", []string{x, b.constant([]int64{1}, 0), end1, axes})
	right := b.op("Slice", []string{x, end1, end2, axes})
	// branch: 1x1 conv, BN, relu, depthwise 3x3, 1x1 conv, relu
	h := c / 2
	y := b.op("Conv", []string{right, b.weight("w", 0.3, h, h, 1, 1), b.weight("b", 0.1, h)}, aInts("kernel_shape", 1, 1))
	y = b.op("BatchNormalization", []string{y, b.weight("g", 0.1, h), b.weight("beta", 0.1, h), b.weight("mu", 0.1, h), b.floats("var", []int64{h}, ones32(h))})
	y = b.op("Relu", []string{y})
	y = b.op("Conv", []string{y, b.weight("dw", 0.3, h, 1, 3, 3)}, aInt("group", h), aInts("pads", 1, 1, 1, 1))
	y = b.op("Conv", []string{y, b.weight("w", 0.3, h, h, 1, 1)})
	y = b.op("Relu", []string{y})
	cat := b.op("Concat", []string{left, y}, aInt("axis", 1))
	// channel shuffle with 2 groups
	s := b.op("Shape", []string{cat})
	n := b.op("Gather", []string{s, b.constant(nil, 0)}, aInt("axis", 0))
	cc := b.op("Gather", []string{s, b.constant(nil, 1)}, aInt("axis", 0))
	hh := b.op("Gather", []string{s, b.constant(nil, 2)}, aInt("axis", 0))
	ww := b.op("Gather", []string{s, b.constant(nil, 3)}, aInt("axis", 0))
	per := b.op("Cast", []string{b.op("Div", []string{cc, b.constant(nil, 2)})}, aInt("to", int64(onnxio.Int64)))
	shape5 := b.op("Concat", []string{unsq(n), b.constant([]int64{1}, 2), unsq(per), unsq(hh), unsq(ww)}, aInt("axis", 0))
	r := b.op("Reshape", []string{cat, shape5})
	r = b.op("Transpose", []string{r}, aInts("perm", 0, 2, 1, 3, 4))
	shape4 := b.op("Concat", []string{unsq(n), b.constant([]int64{1}, -1), unsq(hh), unsq(ww)}, aInt("axis", 0))
	return b.op("Reshape", []string{r, shape4})
}

func ones32(n int64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// shapeGraphs are small models, all with a dynamic batch, that exercise
// every operator static inference supports, in opset variants.
func shapeGraphs() map[string]func() *onnxpb.ModelProto {
	return map[string]func() *onnxpb.ModelProto{
		"shufflenet-op13": func() *onnxpb.ModelProto {
			b := newBuilder(1)
			x := b.op("Conv", []string{"x", b.weight("w", 0.3, 8, 3, 3, 3)}, aInts("strides", 2, 2), aInts("pads", 1, 1, 1, 1))
			x = b.op("MaxPool", []string{x}, aInts("kernel_shape", 3, 3), aInts("strides", 2, 2), aInts("pads", 1, 1, 1, 1))
			x = shuffleBlock(b, x, 8, 13)
			x = shuffleBlock(b, x, 8, 13)
			x = b.op("ReduceMean", []string{x}, aInts("axes", 2, 3), aInt("keepdims", 0))
			x = b.op("Gemm", []string{x, b.weight("fc", 0.1, 5, 8), b.weight("fcb", 0.1, 5)}, aInt("transB", 1))
			x = b.op("Softmax", []string{x}, aInt("axis", 1))
			return b.model(13, []int64{-1, 3, 15, 15}, x)
		},
		"shufflenet-op11": func() *onnxpb.ModelProto {
			b := newBuilder(2)
			x := b.op("Conv", []string{"x", b.weight("w", 0.3, 6, 3, 3, 3)}, aInts("strides", 2, 2), aInts("pads", 1, 1, 1, 1))
			x = b.op("MaxPool", []string{x}, aInts("kernel_shape", 3, 3), aInts("strides", 2, 2), aInt("ceil_mode", 1))
			x = shuffleBlock(b, x, 6, 11)
			x = b.op("GlobalAveragePool", []string{x})
			x = b.op("Flatten", []string{x}, aInt("axis", 1))
			x = b.op("Gemm", []string{x, b.weight("fc", 0.1, 6, 4)})
			return b.model(11, []int64{-1, 3, 16, 16}, x)
		},
		"opset9-attributes": func() *onnxpb.ModelProto {
			b := newBuilder(3)
			x := b.op("Conv", []string{"x", b.weight("w", 0.3, 6, 3, 3, 3), b.weight("b", 0.1, 6)}, aString("auto_pad", "SAME_UPPER"), aInts("strides", 2, 2))
			x = b.op("Clip", []string{x}, aFloat("min", 0), aFloat("max", 6))
			x = b.op("AveragePool", []string{x}, aInts("kernel_shape", 2, 2), aInts("strides", 2, 2), aInts("pads", 0, 0, 1, 1))
			parts := b.opN("Split", []string{x}, 2, aInt("axis", 1), aInts("split", 2, 4))
			y := b.op("Slice", []string{parts[1]}, aInts("starts", 1, 0), aInts("ends", 1000, -1), aInts("axes", 1, 3))
			y = b.op("Dropout", []string{y}, aFloat("ratio", 0.5))
			y = b.op("Mul", []string{y, b.weight("s", 1, 1, 3, 1, 1)})
			y = b.op("Sigmoid", []string{y})
			m := b.op("ReduceMean", []string{y}, aInts("axes", -1), aInt("keepdims", 1))
			m = b.op("Squeeze", []string{m}, aInts("axes", 3))
			m = b.op("Unsqueeze", []string{m}, aInts("axes", 0))
			m = b.op("Transpose", []string{m})
			f := b.op("Reshape", []string{parts[0], b.ints("shape", 0, -1)})
			f = b.op("MatMul", []string{f, b.weight("mm", 0.1, 18, 4)})
			f = b.op("Relu", []string{f})
			return b.model(9, []int64{-1, 3, 9, 9}, m, f)
		},
		"mobilenetv3-ops": func() *onnxpb.ModelProto {
			b := newBuilder(4)
			x := b.op("Conv", []string{"x", b.weight("w", 0.3, 4, 3, 3, 3)}, aInts("strides", 2, 2), aInts("pads", 1, 1, 1, 1), aInts("dilations", 1, 1))
			x = b.op("HardSwish", []string{x})
			x = b.op("Conv", []string{x, b.weight("dw", 0.3, 4, 1, 3, 3)}, aInt("group", 4), aInts("dilations", 2, 2), aInts("pads", 2, 2, 2, 2))
			se := b.op("GlobalAveragePool", []string{x})
			se = b.op("Conv", []string{se, b.weight("se1", 0.3, 2, 4, 1, 1), b.weight("se1b", 0.1, 2)})
			se = b.op("Relu", []string{se})
			se = b.op("Conv", []string{se, b.weight("se2", 0.3, 4, 2, 1, 1), b.weight("se2b", 0.1, 4)})
			se = b.op("HardSigmoid", []string{se}, aFloat("alpha", 1.0/6), aFloat("beta", 0.5))
			x = b.op("Mul", []string{se, x})
			x = b.op("Add", []string{x, b.op("Sub", []string{x, b.op("Div", []string{x, b.weight("d", 0, 1)})})})
			x = b.op("Clip", []string{x, b.floats("lo", nil, []float32{0}), b.floats("hi", nil, []float32{6})})
			x = b.op("Pad", []string{x, b.ints("pads", 0, 0, 1, 0, 0, 0, 0, 2)})
			x = b.op("Conv", []string{x, b.weight("pw", 0.3, 4, 4, 1, 1)})
			sh := b.op("Shape", []string{x})
			sz := b.op("Cast", []string{b.op("Gather", []string{sh, b.constant([]int64{2}, 2, 3)})}, aInt("to", int64(onnxio.Float)))
			sz = b.op("Cast", []string{b.op("Floor", []string{b.op("Div", []string{sz, b.floats("two", nil, []float32{2})})})}, aInt("to", int64(onnxio.Int64)))
			x = b.op("Slice", []string{x, b.constant([]int64{2}, 0, 0), sz, b.constant([]int64{2}, 2, 3), b.constant([]int64{2}, 1, 1)})
			parts := b.opN("Split", []string{x, b.ints("split", 1, 3)}, 2, aInt("axis", 1))
			p0 := b.op("Squeeze", []string{b.op("ReduceMean", []string{parts[0]}, aInts("axes", 1)), b.ints("axes", 1)})
			p0 = b.op("Unsqueeze", []string{p0, b.ints("axes", -3)})
			x = b.op("Concat", []string{p0, parts[1]}, aInt("axis", -3))
			x = b.op("Flatten", []string{x}, aInt("axis", 1))
			x = b.op("Gemm", []string{x, b.weight("fc", 0.1, 3, 48), b.weight("fcb", 0.1, 3)}, aInt("transB", 1))
			return b.model(14, []int64{-1, 3, 11, 13}, x)
		},
	}
}

// withAllOutputs returns a copy of m in which every node output is also a
// graph output, typed as inferred.
func withAllOutputs(m *onnxpb.ModelProto, s *Shapes) *onnxpb.ModelProto {
	out := &onnxpb.ModelProto{IrVersion: m.IrVersion, OpsetImport: m.OpsetImport, Graph: &onnxpb.GraphProto{
		Name: m.Graph.Name, Node: m.Graph.Node, Initializer: m.Graph.Initializer, Input: m.Graph.Input}}
	seen := map[string]bool{}
	for _, n := range m.Graph.Node {
		for _, o := range n.Output {
			if o == "" || seen[o] || len(s.Get(o).Shape) == 0 {
				continue
			}
			seen[o] = true
			out.Graph.Output = append(out.Graph.Output, tensorInfo(o, s.Get(o).DType, nil))
		}
	}
	return out
}

// TestInferShapesMatchesONNXRuntime runs every test graph in ONNX Runtime
// with every intermediate tensor exposed and compares each tensor's shape,
// and the contents of each integer tensor whose value inference claims to
// know, with what ONNX Runtime computed.
func TestInferShapesMatchesONNXRuntime(t *testing.T) {
	testutil.RequireORT(t)
	for name, build := range shapeGraphs() {
		for _, batch := range []int64{1, 3} {
			t.Run(fmt.Sprintf("%s/batch%d", name, batch), func(t *testing.T) {
				m := build()
				in := m.Graph.Input[0].GetType().GetTensorType().GetShape().GetDim()
				shape := []int64{batch}
				for _, d := range in[1:] {
					shape = append(shape, d.GetDimValue())
				}
				opts := ShapeOptions{}
				if batch != 1 {
					opts.InputShapes = map[string][]int64{"x": shape}
				}
				s, err := InferShapes(m, opts)
				if err != nil {
					t.Fatal(err)
				}
				if len(s.Warnings) > 0 {
					t.Fatalf("warnings: %v", s.Warnings)
				}
				path := save(t, withAllOutputs(m, s), name+".onnx")
				rng := rand.New(rand.NewSource(batch))
				got, err := ortrun.Run(path, map[string]ortrun.Tensor{"x": {Shape: shape, Data: randomInput(rng, shape...)}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				checked := 0
				for tensor, ref := range got {
					v := s.Get(tensor)
					if !v.Known {
						t.Errorf("%s: shape unknown, ONNX Runtime gives %v", tensor, ref.Shape)
						continue
					}
					if !reflect.DeepEqual(v.Shape, ref.Shape) && !(len(v.Shape) == 0 && len(ref.Shape) == 0) {
						t.Errorf("%s: inferred shape %v, ONNX Runtime %v", tensor, v.Shape, ref.Shape)
					}
					if v.Ints != nil {
						for i, x := range v.Ints {
							if i >= len(ref.Data) || float32(x) != ref.Data[i] {
								t.Errorf("%s: inferred value %v, ONNX Runtime %v", tensor, v.Ints, ref.Data)
								break
							}
						}
					}
					checked++
				}
				if checked < len(m.Graph.Node)/2 {
					t.Fatalf("only %d tensors compared", checked)
				}
			})
		}
	}
}

func TestInferShapesErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func() *onnxpb.ModelProto
		opts  ShapeOptions
		want  string
	}{
		{"broadcast", func() *onnxpb.ModelProto {
			b := newBuilder(1)
			return b.model(13, []int64{1, 3, 4, 4}, b.op("Add", []string{"x", b.weight("w", 1, 5)}))
		}, ShapeOptions{}, "do not broadcast"},
		{"reshape", func() *onnxpb.ModelProto {
			b := newBuilder(1)
			return b.model(13, []int64{1, 3, 4, 4}, b.op("Reshape", []string{"x", b.ints("s", 5, -1)}))
		}, ShapeOptions{}, "cannot reshape"},
		{"conv-channels", func() *onnxpb.ModelProto {
			b := newBuilder(1)
			return b.model(13, []int64{1, 3, 4, 4}, b.op("Conv", []string{"x", b.weight("w", 1, 2, 4, 1, 1)}))
		}, ShapeOptions{}, "expects 4"},
		{"override-rank", func() *onnxpb.ModelProto {
			return newBuilder(1).model(13, []int64{-1, 3, 4, 4}, "x")
		}, ShapeOptions{InputShapes: map[string][]int64{"x": {1, 3}}}, "rank"},
		{"override-fixed", func() *onnxpb.ModelProto {
			return newBuilder(1).model(13, []int64{-1, 3, 4, 4}, "x")
		}, ShapeOptions{InputShapes: map[string][]int64{"x": {1, 3, 8, 8}}}, "fixes dim 2 at 4"},
		{"override-name", func() *onnxpb.ModelProto {
			return newBuilder(1).model(13, []int64{-1, 3, 4, 4}, "x")
		}, ShapeOptions{InputShapes: map[string][]int64{"y": {1, 3, 4, 4}}}, "no input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := InferShapes(tc.build(), tc.opts)
			if err == nil || !contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestInferShapesUnsupportedOpWarns(t *testing.T) {
	b := newBuilder(1)
	y := b.op("Resize", []string{"x"})
	z := b.op("Relu", []string{y})
	s, err := InferShapes(b.model(13, []int64{1, 3, 4, 4}, z), ShapeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Warnings) != 1 || !contains(s.Warnings[0], "Resize") {
		t.Fatalf("warnings %v, want one naming Resize", s.Warnings)
	}
	if s.Get(z).Known {
		t.Fatalf("output of a node after an unsupported one should be unknown")
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0))
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}
