package convert

import (
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// builder assembles small ONNX graphs for tests.
type builder struct {
	nodes []*onnxpb.NodeProto
	inits []*onnxpb.TensorProto
	count int
	rng   *rand.Rand
}

func newBuilder(seed int64) *builder { return &builder{rng: rand.New(rand.NewSource(seed))} }

func (b *builder) fresh(prefix string) string {
	b.count++
	return fmt.Sprintf("%s_%d", prefix, b.count)
}

// weight adds a float initializer with random N(0, scale²) values.
func (b *builder) weight(prefix string, scale float64, dims ...int64) string {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(b.rng.NormFloat64() * scale)
	}
	return b.floats(prefix, dims, data)
}

func (b *builder) floats(prefix string, dims []int64, data []float32) string {
	name := b.fresh(prefix)
	b.inits = append(b.inits, onnxio.NewFloat32(name, dims, data))
	return name
}

func (b *builder) ints(prefix string, data ...int64) string {
	name := b.fresh(prefix)
	b.inits = append(b.inits, onnxio.NewInt64(name, []int64{int64(len(data))}, data))
	return name
}

// constant adds a Constant node holding an int64 tensor of the given dims.
func (b *builder) constant(dims []int64, data ...int64) string {
	out := b.fresh("const")
	b.nodes = append(b.nodes, &onnxpb.NodeProto{
		OpType: "Constant", Name: out, Output: []string{out},
		Attribute: []*onnxpb.AttributeProto{{Name: "value", Type: onnxpb.AttributeProto_TENSOR, T: onnxio.NewInt64("", dims, data)}},
	})
	return out
}

// op adds a node with one output and returns the output name.
func (b *builder) op(op string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	return b.opN(op, inputs, 1, attrs...)[0]
}

func (b *builder) opN(op string, inputs []string, outputs int, attrs ...*onnxpb.AttributeProto) []string {
	name := b.fresh(op)
	outs := make([]string, outputs)
	for i := range outs {
		outs[i] = fmt.Sprintf("%s_out%d", name, i)
	}
	b.nodes = append(b.nodes, &onnxpb.NodeProto{OpType: op, Name: name, Input: inputs, Output: outs, Attribute: attrs})
	return outs
}

func aInts(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INTS, Ints: v}
}

func aInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INT, I: v}
}

func aFloat(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_FLOAT, F: v}
}

func aString(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_STRING, S: []byte(v)}
}

// tensorInfo declares a float tensor; a dim < 0 is dynamic ("N").
func tensorInfo(name string, elem onnxio.DataType, dims []int64) *onnxpb.ValueInfoProto {
	var shape *onnxpb.TensorShapeProto
	if dims != nil {
		shape = &onnxpb.TensorShapeProto{}
		for _, d := range dims {
			dim := &onnxpb.TensorShapeProto_Dimension{}
			if d < 0 {
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}
			} else {
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}
			}
			shape.Dim = append(shape.Dim, dim)
		}
	}
	return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(elem), Shape: shape}}}}
}

// model wraps the graph: one float input "x" with inDims, and the given
// float outputs without declared shapes.
func (b *builder) model(opset int64, inDims []int64, outputs ...string) *onnxpb.ModelProto {
	g := &onnxpb.GraphProto{Name: "test", Node: b.nodes, Initializer: b.inits,
		Input: []*onnxpb.ValueInfoProto{tensorInfo("x", onnxio.Float, inDims)}}
	ir := int64(7)
	if opset <= 9 {
		ir = 4
	}
	m := &onnxpb.ModelProto{IrVersion: ir, ProducerName: "lprconv-test", Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: opset}}}
	// Declare output shapes as inferred (with the dynamic batch kept), or
	// leave them undeclared when inference fails (error tests).
	s, err := InferShapes(m, ShapeOptions{})
	for _, o := range outputs {
		var dims []int64
		if err == nil && s.Get(o).Known {
			dims = append([]int64{}, s.Get(o).Shape...)
			if len(dims) > 0 && len(inDims) > 0 && inDims[0] < 0 {
				dims[0] = -1
			}
		}
		g.Output = append(g.Output, tensorInfo(o, onnxio.Float, dims))
	}
	return m
}

// save writes m into a temporary folder and returns its path.
func save(t testing.TB, m *onnxpb.ModelProto, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := onnxio.Save(p, m, onnxio.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

func randomInput(rng *rand.Rand, shape ...int64) []float32 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(rng.NormFloat64())
	}
	return data
}
