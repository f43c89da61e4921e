package engine

import (
	"fmt"
	"math/rand/v2"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// graphBuilder assembles small ONNX models for tests and benchmarks.
type graphBuilder struct {
	g     *onnxpb.GraphProto
	opset int64
	rng   *rand.Rand
	n     int
}

func newGraph(opset int64) *graphBuilder {
	return &graphBuilder{g: &onnxpb.GraphProto{Name: "test"}, opset: opset, rng: rand.New(rand.NewPCG(1, 2))}
}

func valueInfo(name string, dt onnxpb.TensorProto_DataType, shape []int) *onnxpb.ValueInfoProto {
	var dims []*onnxpb.TensorShapeProto_Dimension
	for _, d := range shape {
		if d < 0 {
			dims = append(dims, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}})
		} else {
			dims = append(dims, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}})
		}
	}
	return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(dt), Shape: &onnxpb.TensorShapeProto{Dim: dims}}}}}
}

// input declares a float graph input (a negative dim is dynamic).
func (b *graphBuilder) input(name string, shape ...int) string {
	b.g.Input = append(b.g.Input, valueInfo(name, onnxpb.TensorProto_FLOAT, shape))
	return name
}

func (b *graphBuilder) output(name string) {
	b.g.Output = append(b.g.Output, &onnxpb.ValueInfoProto{Name: name})
}

// weight adds a random float initializer scaled by scale.
func (b *graphBuilder) weight(scale float32, shape ...int) string {
	data := make([]float32, sizeOf(shape))
	for i := range data {
		data[i] = scale * float32(b.rng.NormFloat64())
	}
	return b.initF(data, shape...)
}

func (b *graphBuilder) initF(data []float32, shape ...int) string {
	b.n++
	name := fmt.Sprintf("w%d", b.n)
	dims := make([]int64, len(shape))
	for i, d := range shape {
		dims[i] = int64(d)
	}
	b.g.Initializer = append(b.g.Initializer, onnxio.NewFloat32(name, dims, data))
	return name
}

func (b *graphBuilder) initI(data []int64, shape ...int) string {
	b.n++
	name := fmt.Sprintf("i%d", b.n)
	dims := make([]int64, len(shape))
	for i, d := range shape {
		dims[i] = int64(d)
	}
	b.g.Initializer = append(b.g.Initializer, onnxio.NewInt64(name, dims, data))
	return name
}

func attrInts(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INTS, Ints: v}
}

func attrInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INT, I: v}
}

func attrFloat(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_FLOAT, F: v}
}

// node adds a node with one output (or nOut > 1 outputs) and returns the
// first output name.
func (b *graphBuilder) node(op string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	b.n++
	out := fmt.Sprintf("%s_%d", op, b.n)
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{Name: fmt.Sprintf("n%d", b.n), OpType: op, Input: inputs, Output: []string{out}, Attribute: attrs})
	return out
}

func (b *graphBuilder) model() *onnxpb.ModelProto {
	return &onnxpb.ModelProto{IrVersion: 8, Graph: b.g, OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: "", Version: b.opset}}}
}

// convBNRelu adds Conv (+ bias) and Relu.
func (b *graphBuilder) convRelu(x string, cin, cout, k, stride, group int) string {
	w := b.weight(float32(1.5/float64(cin/group*k*k)), cout, cin/group, k, k)
	bias := b.weight(0.1, cout)
	p := int64(k / 2)
	y := b.node("Conv", []string{x, w, bias}, attrInts("kernel_shape", int64(k), int64(k)),
		attrInts("strides", int64(stride), int64(stride)), attrInts("pads", p, p, p, p), attrInt("group", int64(group)))
	return b.node("Relu", []string{y})
}

// mobileNetV1 builds a MobileNetV1 of the given width multiplier and input
// resolution with random weights (BatchNorm folded, as exporters emit it).
func mobileNetV1(width float64, res, classes int) *onnxpb.ModelProto {
	b := newGraph(13)
	ch := func(c int) int { return int(float64(c) * width) }
	x := b.input("input", -1, 3, res, res)
	c := ch(32)
	x = b.convRelu(x, 3, c, 3, 2, 1)
	cfg := []struct{ out, stride int }{{64, 1}, {128, 2}, {128, 1}, {256, 2}, {256, 1}, {512, 2},
		{512, 1}, {512, 1}, {512, 1}, {512, 1}, {512, 1}, {1024, 2}, {1024, 1}}
	for _, l := range cfg {
		x = b.convRelu(x, c, c, 3, l.stride, c)
		x = b.convRelu(x, c, ch(l.out), 1, 1, 1)
		c = ch(l.out)
	}
	x = b.node("GlobalAveragePool", []string{x})
	x = b.node("Flatten", []string{x}, attrInt("axis", 1))
	x = b.node("Gemm", []string{x, b.weight(0.05, classes, c), b.weight(0.1, classes)}, attrInt("transB", 1))
	b.output(x)
	return b.model()
}

func randTensor(rng *rand.Rand, shape ...int) *Tensor {
	t := NewTensor(shape...)
	for i := range t.F {
		t.F[i] = float32(rng.NormFloat64())
	}
	return t
}
