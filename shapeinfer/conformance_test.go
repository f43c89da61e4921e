package shapeinfer

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// conformanceRoot holds ONNX's per-operator node test cases.
var conformanceRoot = filepath.Join(testutil.ConformanceRoot, "node")

// minConformancePasses is the least number of conformance cases per
// operator whose every output shape (and every statically known integer
// output) Infer must get right; set from the counts of the first run, so
// that a rule that stops handling a case fails the test.
var minConformancePasses = map[string]int{
	"Abs": 1, "Add": 23, "And": 8, "AveragePool": 13, "BatchNormalization": 4, "Cast": 37, "Ceil": 2,
	"Celu": 1, "Clip": 11, "Concat": 31, "Constant": 36, "ConstantOfShape": 22, "Conv": 6, "Div": 32,
	"Dropout": 12, "Elu": 4, "Equal": 6, "Erf": 1, "Exp": 16, "Expand": 2, "Flatten": 28, "Floor": 2,
	"Gather": 4, "Gemm": 11, "GlobalAveragePool": 2, "GlobalMaxPool": 2, "Greater": 4,
	"GreaterOrEqual": 2, "HardSigmoid": 4, "HardSwish": 1, "Identity": 1, "InstanceNormalization": 2,
	"LRN": 2, "LeakyRelu": 3, "Less": 4, "LessOrEqual": 2, "Log": 9, "LogSoftmax": 7, "MatMul": 3,
	"Max": 14, "MaxPool": 15, "Mean": 3, "MeanVarianceNormalization": 1, "Min": 14, "Mod": 13,
	"Mul": 25, "Neg": 12, "Not": 3, "Or": 12, "PRelu": 2, "Pad": 3, "Pow": 15, "Reciprocal": 21,
	"ReduceL1": 8, "ReduceL2": 8, "ReduceLogSum": 5, "ReduceLogSumExp": 8, "ReduceMax": 22,
	"ReduceMean": 28, "ReduceMin": 8, "ReduceProd": 8, "ReduceSum": 24, "ReduceSumSquare": 8,
	"Relu": 1, "Reshape": 29, "Round": 1, "Selu": 3, "Shape": 29, "Shrink": 2, "Sigmoid": 2,
	"Sign": 1, "Size": 21, "Slice": 27, "Softmax": 7, "Softplus": 2, "Softsign": 2, "Split": 7,
	"Sqrt": 22, "Squeeze": 2, "Sub": 38, "Sum": 3, "Tanh": 2, "ThresholdedRelu": 3, "Transpose": 7,
	"Unsqueeze": 8, "Where": 2, "Xor": 8,
}

// supported reports whether Infer has a rule for op.
func supported(op string) bool {
	_, ok := nodeRules[op]
	return ok || unaryOps[op] || binaryOps[op] || op == "Constant"
}

// conformanceCase infers the shapes of one case's model with the shapes
// of its first data set's inputs (integer inputs become constants, as
// shape arguments are in real models) and compares them with the expected
// outputs. It returns the operators of the model, or a skip reason: one
// of skipNoRule (an operator has no rule; such cases are not counted),
// skipNonTensor or skipBadData.
func conformanceCase(dir string) (ops []string, skip string, err error) {
	m, err := onnxio.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		return nil, "", err
	}
	for _, n := range m.GetGraph().GetNode() {
		if !supported(n.GetOpType()) || !onnxio.IsDefaultDomain(n) {
			return nil, skipNoRule, nil
		}
		if !slices.Contains(ops, n.GetOpType()) {
			ops = append(ops, n.GetOpType())
		}
	}
	for _, v := range append(slices.Clone(m.GetGraph().GetInput()), m.GetGraph().GetOutput()...) {
		if v.GetType().GetTensorType() == nil {
			return ops, skipNonTensor, nil
		}
	}
	set := filepath.Join(dir, "test_data_set_0")
	g := m.GetGraph()
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	shapes := map[string][]int64{}
	k := 0
	for _, in := range g.GetInput() {
		if inits[in.GetName()] {
			continue
		}
		t, err := testutil.ReadTensorProto(filepath.Join(set, fmt.Sprintf("input_%d.pb", k)))
		k++
		if err != nil {
			return ops, "", err
		}
		if !fitsDeclared(in, t.GetDims()) {
			return ops, skipBadData, nil
		}
		shapes[in.GetName()] = append([]int64{}, t.GetDims()...)
		switch onnxio.DataType(t.GetDataType()) {
		case onnxio.Int64, onnxio.Int32:
			t.Name = in.GetName()
			g.Initializer = append(g.Initializer, t)
			delete(shapes, in.GetName())
		}
	}
	s, err := Infer(m, Options{InputShapes: shapes})
	if err != nil {
		return ops, "", err
	}
	for i, o := range g.GetOutput() {
		want, err := testutil.ReadTensorProto(filepath.Join(set, fmt.Sprintf("output_%d.pb", i)))
		if err != nil {
			return ops, "", err
		}
		got := s.Get(o.GetName())
		if !got.Known {
			return ops, "", fmt.Errorf("output %q: shape unknown (warnings %v)", o.GetName(), s.Warnings)
		}
		if !slices.Equal(got.Shape, want.GetDims()) {
			return ops, "", fmt.Errorf("output %q: shape %v, want %v", o.GetName(), got.Shape, want.GetDims())
		}
		if got.Ints != nil && onnxio.DataType(want.GetDataType()) == onnxio.Int64 {
			w, err := onnxio.Int64s(want)
			if err != nil {
				return ops, "", err
			}
			if !slices.Equal(got.Ints, w) {
				return ops, "", fmt.Errorf("output %q: values %v, want %v", o.GetName(), got.Ints, w)
			}
		}
	}
	return ops, "", nil
}

// The reasons a conformance case with rules for all its operators is not
// checked; any other problem fails the test.
const (
	skipNoRule    = "an operator has no rule"
	skipNonTensor = "a graph input or output is a sequence or optional, not a tensor"
	skipBadData   = "the test data's input shape contradicts the model's declared shape"
)

// fitsDeclared reports whether dims agree with the rank and the fixed dims
// of the input declaration in.
func fitsDeclared(in *onnxpb.ValueInfoProto, dims []int64) bool {
	sh := in.GetType().GetTensorType().GetShape()
	if sh == nil {
		return true
	}
	if len(sh.GetDim()) != len(dims) {
		return false
	}
	for i, d := range sh.GetDim() {
		if _, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); ok && d.GetDimValue() != dims[i] {
			return false
		}
	}
	return true
}

// TestInferConformance checks Infer against ONNX's conformance cases:
// every case whose operators all have rules must infer the expected output
// shapes, and each operator must keep its minimum number of passing cases.
func TestInferConformance(t *testing.T) {
	if _, err := os.Stat(conformanceRoot); err != nil {
		testutil.Skipf(t, "conformance data missing: %v (install Debian package libonnx-testdata)", err)
	}
	dirs, err := filepath.Glob(filepath.Join(conformanceRoot, "test_*"))
	if err != nil {
		t.Fatal(err)
	}
	passed := map[string]int{}
	cases := 0
	for _, dir := range dirs {
		ops, skip, err := conformanceCase(dir)
		switch skip {
		case skipNoRule:
			continue
		case skipNonTensor, skipBadData:
			t.Logf("%s: not checked: %s", filepath.Base(dir), skip)
			continue
		}
		cases++
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(dir), err)
			continue
		}
		for _, op := range ops {
			passed[op]++
		}
	}
	var sb strings.Builder
	for _, op := range slices.Sorted(maps.Keys(passed)) {
		fmt.Fprintf(&sb, "%q: %d, ", op, passed[op])
	}
	t.Logf("%d cases with supported operators; passes per operator: %s", cases, sb.String())
	for op, want := range minConformancePasses {
		if passed[op] < want {
			t.Errorf("%s: %d conformance cases pass, want at least %d", op, passed[op], want)
		}
	}
}
