package quantize

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// isFloatSlot reports whether input i of op carries the operator's main
// numeric type T, the inputs a precision change converts. Operators not
// listed here are never converted.
func isFloatSlot(op string, i int) bool {
	switch op {
	case "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Sum", "Max", "Min", "Mean",
		"Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish", "Clip", "PRelu", "Sqrt", "Exp",
		"Neg", "Abs", "Erf", "Softmax", "LogSoftmax", "Identity", "BatchNormalization", "GlobalAveragePool",
		"GlobalMaxPool", "AveragePool", "Concat":
		return true
	case "MaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "Flatten", "Dropout", "Reshape", "Transpose",
		"Squeeze", "Unsqueeze", "Slice", "Split", "Gather", "Expand", "Tile", "Resize":
		return i == 0
	case "Pad":
		return i == 0 || i == 2
	case "Where":
		return i == 1 || i == 2
	}
	return false
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
			out = onnxio.DataType(onnxio.AttrInt(n, "to", 0))
		case "Constant":
			a := onnxio.Attr(n, "value")
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
