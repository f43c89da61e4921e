package quantize

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// floatSlots tells, per operator type, which inputs carry the operator's
// main numeric type T (the ones a precision change converts); -1 means
// every input. Operators missing here are never converted.
var floatSlots = map[string][]int{
	"Conv": {-1}, "ConvTranspose": {-1}, "Gemm": {-1}, "MatMul": {-1},
	"Add": {-1}, "Sub": {-1}, "Mul": {-1}, "Div": {-1}, "Sum": {-1}, "Max": {-1}, "Min": {-1}, "Mean": {-1},
	"Relu": {-1}, "Sigmoid": {-1}, "Tanh": {-1}, "LeakyRelu": {-1}, "HardSigmoid": {-1}, "HardSwish": {-1},
	"Clip": {-1}, "PRelu": {-1}, "Sqrt": {-1}, "Exp": {-1}, "Neg": {-1}, "Abs": {-1}, "Erf": {-1},
	"Softmax": {-1}, "LogSoftmax": {-1}, "Identity": {-1}, "BatchNormalization": {-1},
	"GlobalAveragePool": {-1}, "GlobalMaxPool": {-1}, "AveragePool": {-1}, "MaxPool": {0},
	"ReduceMean": {0}, "ReduceSum": {0}, "ReduceMax": {0}, "Flatten": {0}, "Dropout": {0},
	"Reshape": {0}, "Transpose": {0}, "Squeeze": {0}, "Unsqueeze": {0}, "Slice": {0}, "Split": {0},
	"Concat": {-1}, "Gather": {0}, "Pad": {0, 2}, "Expand": {0}, "Tile": {0}, "Resize": {0},
	"Where": {1, 2},
}

// isFloatSlot reports whether input i of op carries T.
func isFloatSlot(op string, i int) bool {
	for _, s := range floatSlots[op] {
		if s == -1 || s == i {
			return true
		}
	}
	return false
}

// defaultDomain reports whether the node is in the default ONNX domain.
func defaultDomain(n *onnxpb.NodeProto) bool {
	return n.GetDomain() == "" || n.GetDomain() == "ai.onnx"
}

// elemTypes infers the element type of every value of g: graph inputs and
// initializers as declared, node outputs by operator (Shape gives INT64,
// Cast its "to", Constant its tensor's type, comparisons BOOL, the others
// their first input's type).
func elemTypes(g *onnxpb.GraphProto) (map[string]onnxio.DataType, error) {
	ty := map[string]onnxio.DataType{}
	for _, v := range g.GetInput() {
		ty[v.GetName()] = onnxio.DataType(v.GetType().GetTensorType().GetElemType())
	}
	for _, t := range g.GetInitializer() {
		ty[t.GetName()] = onnxio.DataType(t.GetDataType())
	}
	for i, n := range g.GetNode() {
		var out onnxio.DataType
		switch n.GetOpType() {
		case "Shape", "Size", "ArgMax", "ArgMin", "NonZero":
			out = onnxio.Int64
		case "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf":
			out = onnxio.Bool
		case "Cast":
			out = onnxio.DataType(attrInt(n, "to", 0))
		case "Constant":
			a := attr(n, "value")
			if a == nil || a.GetT() == nil {
				return nil, fmt.Errorf("node %d (%s %q): Constant without a tensor value", i, n.GetOpType(), n.GetName())
			}
			out = onnxio.DataType(a.GetT().GetDataType())
		case "QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger":
			return nil, fmt.Errorf("node %d (%s %q): the model is already quantized", i, n.GetOpType(), n.GetName())
		default:
			if len(n.GetInput()) == 0 {
				return nil, fmt.Errorf("node %d (%s %q): cannot tell the type of an operator without inputs", i, n.GetOpType(), n.GetName())
			}
			t, ok := ty[n.GetInput()[0]]
			if !ok {
				return nil, fmt.Errorf("node %d (%s %q): input %q has no known type", i, n.GetOpType(), n.GetName(), n.GetInput()[0])
			}
			out = t
		}
		for _, o := range n.GetOutput() {
			if o != "" {
				ty[o] = out
			}
		}
	}
	return ty, nil
}

func attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

func attrInt(n *onnxpb.NodeProto, name string, def int64) int64 {
	if a := attr(n, name); a != nil {
		return a.GetI()
	}
	return def
}

// opsetVersion returns the model's default-domain opset version.
func opsetVersion(m *onnxpb.ModelProto) int64 {
	for _, o := range m.GetOpsetImport() {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			return o.GetVersion()
		}
	}
	return 0
}

// namer hands out value and node names not yet used in the graph.
type namer struct{ used map[string]bool }

func newNamer(g *onnxpb.GraphProto) *namer {
	u := map[string]bool{}
	for _, v := range g.GetInput() {
		u[v.GetName()] = true
	}
	for _, v := range g.GetOutput() {
		u[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		u[t.GetName()] = true
	}
	for _, n := range g.GetNode() {
		u[n.GetName()] = true
		for _, o := range n.GetOutput() {
			u[o] = true
		}
	}
	return &namer{used: u}
}

// fresh returns base, or base with a numeric suffix when base is taken,
// and marks it used.
func (nm *namer) fresh(base string) string {
	name := base
	for i := 1; nm.used[name]; i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	nm.used[name] = true
	return name
}

func castNode(name, in, out string, to onnxio.DataType) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{Name: name, OpType: "Cast", Input: []string{in}, Output: []string{out},
		Attribute: []*onnxpb.AttributeProto{{Name: "to", Type: onnxpb.AttributeProto_INT, I: int64(to)}}}
}

// setValueType changes the element type recorded for name in value_info
// and graph outputs.
func setValueType(g *onnxpb.GraphProto, name string, t onnxio.DataType) {
	for _, list := range [][]*onnxpb.ValueInfoProto{g.GetValueInfo(), g.GetOutput()} {
		for _, v := range list {
			if v.GetName() == name {
				if tt := v.GetType().GetTensorType(); tt != nil {
					tt.ElemType = int32(t)
				}
			}
		}
	}
}
