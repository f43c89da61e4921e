package engine

import "fmt"

// window lists the attributes of convolution and pooling windows.
var windowAttrNames = []string{"kernel_shape", "strides", "dilations", "pads", "auto_pad"}

// since wraps a builder of an operator introduced in opset v.
func since(v int, build func(b *nodeBuild) (Op, error)) func(b *nodeBuild) (Op, error) {
	return func(b *nodeBuild) (Op, error) {
		if b.opset < v {
			return nil, fmt.Errorf("operator %s exists from opset %d; the model imports opset %d", b.node.OpType, v, b.opset)
		}
		return build(b)
	}
}

func with(base []string, more ...string) []string {
	return append(append([]string(nil), base...), more...)
}

// registry maps ONNX operator types (domain ai.onnx) to their builders and
// the attributes they accept; anything else is rejected at Compile.
var registry = map[string]opDef{
	"Conv":               {with(windowAttrNames, "group"), buildConv},
	"BatchNormalization": {[]string{"epsilon", "momentum", "spatial", "is_test", "training_mode"}, buildBatchNorm},
	"MaxPool":            {with(windowAttrNames, "ceil_mode", "storage_order"), buildPool(true)},
	"AveragePool":        {with(windowAttrNames, "ceil_mode", "count_include_pad"), buildPool(false)},
	"GlobalAveragePool":  {nil, buildGlobalPool(false)},
	"GlobalMaxPool":      {nil, buildGlobalPool(true)},
	"Relu":               {nil, buildUnary(uRelu)},
	"Sigmoid":            {nil, buildUnary(uSigmoid)},
	"HardSigmoid":        {[]string{"alpha", "beta"}, buildUnary(uHardSigmoid)},
	"HardSwish":          {nil, since(14, buildUnary(uHardSwish))},
	"Clip":               {[]string{"min", "max"}, buildUnary(uClip)},
	"LeakyRelu":          {[]string{"alpha"}, buildUnary(uLeakyRelu)},
	"Tanh":               {nil, buildUnary(uTanh)},
	"Exp":                {nil, buildUnary(uExp)},
	"Neg":                {nil, buildUnary(uNeg)},
	"Abs":                {nil, buildUnary(uAbs)},
	"Sqrt":               {nil, buildUnary(uSqrt)},
	"Add":                {[]string{"broadcast", "axis"}, buildBinary(bAdd)},
	"Sub":                {[]string{"broadcast", "axis"}, buildBinary(bSub)},
	"Mul":                {[]string{"broadcast", "axis"}, buildBinary(bMul)},
	"Div":                {[]string{"broadcast", "axis"}, buildBinary(bDiv)},
	"Gemm":               {[]string{"alpha", "beta", "transA", "transB", "broadcast"}, buildGemm},
	"MatMul":             {nil, buildMatMul},
	"Softmax":            {[]string{"axis"}, buildSoftmax(false)},
	"LogSoftmax":         {[]string{"axis"}, buildSoftmax(true)},
	"ReduceMean":         {[]string{"axes", "keepdims", "noop_with_empty_axes"}, buildReduce(true)},
	"ReduceSum":          {[]string{"axes", "keepdims", "noop_with_empty_axes"}, buildReduce(false)},
	"Identity":           {nil, buildIdentity},
	"Dropout":            {[]string{"ratio", "is_test", "seed"}, buildDropout},
	"Reshape":            {[]string{"shape", "allowzero"}, buildReshape},
	"Flatten":            {[]string{"axis"}, buildFlatten},
	"Squeeze":            {[]string{"axes"}, buildSqueeze},
	"Unsqueeze":          {[]string{"axes"}, buildUnsqueeze},
	"Transpose":          {[]string{"perm"}, buildTranspose},
	"Concat":             {[]string{"axis"}, buildConcat},
	"Split":              {[]string{"axis", "split", "num_outputs"}, buildSplit},
	"Slice":              {[]string{"starts", "ends", "axes"}, buildSlice},
	"Shape":              {[]string{"start", "end"}, buildShape},
	"Gather":             {[]string{"axis"}, buildGather},
	"Cast":               {[]string{"to", "saturate"}, buildCast},
	"Constant":           {[]string{"value", "value_float", "value_floats", "value_int", "value_ints"}, buildConstant},
}

// SupportedOps returns the operator types Compile accepts.
func SupportedOps() []string {
	var names []string
	for n := range registry {
		names = append(names, n)
	}
	sortStrings(names)
	return names
}
