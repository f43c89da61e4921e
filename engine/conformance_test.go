package engine

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
)

// conformanceRoot holds ONNX's per-operator test cases (Debian package
// libonnx-testdata).
const conformanceRoot = testutil.ConformanceRoot

// allowedSkips are the only errors that may skip a case whose operators
// are all claimed: each means "this case uses a form the engine
// deliberately does not support" and is matched against the error of
// reading the case's tensors or of compiling its model. Any other error
// fails the test.
var allowedSkips = []string{
	"element type",                  // double, string, uint8, float16... tensors
	"spatial dims is not supported", // 3-D convolution and pooling
	"training",                      // training-mode BatchNormalization / Dropout
	"Indices output",                // MaxPool indices
	"storage_order",                 // MaxPool storage_order=1
	"legacy broadcast",              // opset < 7 broadcast attribute
	"string form",                   // Cast to given as a string
	skipNonTensor,                   // sequence or optional graph values
}

// skipNonTensor is the reason for cases whose graph inputs or outputs are
// sequences or optionals, which the engine does not represent.
const skipNonTensor = "a graph input or output is not a tensor"

// minPasses is, per operator, the least number of conformance cases using
// it that must pass (set from the counts when the table was introduced;
// raise it when support grows). Cast's cases all use types the engine
// does not have (TestCast covers the supported ones).
var minPasses = map[string]int{
	"Abs": 1, "Add": 5, "AveragePool": 16, "BatchNormalization": 7, "Cast": 0, "Clip": 9,
	"Concat": 13, "Constant": 4, "Conv": 26, "Div": 3, "Dropout": 6, "Exp": 4, "Flatten": 11,
	"Gather": 6, "Gemm": 14, "GlobalAveragePool": 2, "GlobalMaxPool": 2, "HardSigmoid": 4,
	"HardSwish": 1, "Identity": 1, "LeakyRelu": 5, "LogSoftmax": 10, "MatMul": 4, "MaxPool": 17,
	"Mul": 10, "Neg": 5, "ReduceMean": 10, "ReduceSum": 12, "Relu": 3, "Reshape": 11, "Shape": 10,
	"Sigmoid": 7, "Slice": 9, "Softmax": 11, "Split": 10, "Sqrt": 3, "Squeeze": 5, "Sub": 4,
	"Tanh": 5, "Transpose": 10, "Unsqueeze": 10,
}

// count tallies the conformance cases of one operator.
type count struct{ ran, passed, skipped int }

// allowed returns the status of a case stopped by err: "skip-allowed"
// when err names one of allowedSkips, else "fail".
func allowed(err error) string {
	for _, s := range allowedSkips {
		if strings.Contains(err.Error(), s) {
			return "skip-allowed"
		}
	}
	return "fail"
}

type caseResult struct {
	ops    []string
	status string // "pass", "fail", "skip-op", "skip-allowed"
	reason string
}

// runCase runs every test data set of one case directory.
func runCase(dir string) caseResult {
	data, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	if err != nil {
		return caseResult{status: "fail", reason: err.Error()}
	}
	m, err := onnxio.Decode(data)
	if err != nil {
		return caseResult{status: "fail", reason: err.Error()}
	}
	res := caseResult{}
	seen := map[string]bool{}
	var missing []string
	for _, n := range m.Graph.Node {
		if !seen[n.OpType] {
			seen[n.OpType] = true
			res.ops = append(res.ops, n.OpType)
			if _, ok := registry[n.OpType]; !ok || (n.Domain != "" && n.Domain != "ai.onnx") {
				missing = append(missing, n.OpType)
			}
		}
	}
	if len(missing) > 0 {
		res.status, res.reason = "skip-op", "unsupported ops "+strings.Join(missing, ",")
		return res
	}
	for _, v := range append(slices.Clone(m.Graph.Input), m.Graph.Output...) {
		if v.GetType().GetTensorType() == nil {
			res.status, res.reason = "skip-allowed", fmt.Sprintf("%s: %q", skipNonTensor, v.Name)
			return res
		}
	}
	inits := map[string]bool{}
	for _, t := range m.Graph.Initializer {
		inits[t.Name] = true
	}
	var inNames []string
	for _, in := range m.Graph.Input {
		if !inits[in.Name] {
			inNames = append(inNames, in.Name)
		}
	}
	sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
	if len(sets) == 0 {
		res.status, res.reason = "fail", "no test data sets"
		return res
	}
	for _, set := range sets {
		inputs := map[string]*Tensor{}
		shapes := map[string][]int{}
		for k, name := range inNames {
			tp, err := testutil.ReadTensorProto(filepath.Join(set, fmt.Sprintf("input_%d.pb", k)))
			if err != nil {
				res.status, res.reason = "fail", err.Error()
				return res
			}
			t, err := TensorFromProto(tp)
			if err != nil {
				res.status, res.reason = allowed(err), fmt.Sprintf("input %q: %v", name, err)
				return res
			}
			inputs[name], shapes[name] = t, t.Shape
		}
		p, err := Compile(m, Options{Threads: 1, InputShapes: shapes})
		if err != nil && strings.Contains(err.Error(), "must be a constant") {
			// shape-like inputs (Reshape's shape, Slice's starts...) fed
			// as graph inputs: freeze the integer inputs to their values
			consts := map[string]*Tensor{}
			for name, t := range inputs {
				if !t.DType.IsFloat() {
					consts[name] = t
				}
			}
			p, err = Compile(m, Options{Threads: 1, InputShapes: shapes, ConstantInputs: consts})
		}
		if err != nil {
			res.status, res.reason = allowed(err), err.Error()
			return res
		}
		got, err := p.Run(inputs)
		p.Close()
		if err != nil {
			res.status, res.reason = "fail", err.Error()
			return res
		}
		for k, o := range m.Graph.Output {
			tp, err := testutil.ReadTensorProto(filepath.Join(set, fmt.Sprintf("output_%d.pb", k)))
			if err != nil {
				res.status, res.reason = "fail", err.Error()
				return res
			}
			want, err := TensorFromProto(tp)
			if err != nil {
				res.status, res.reason = allowed(err), fmt.Sprintf("output %q: %v", o.Name, err)
				return res
			}
			if msg := compareTensors(got[o.Name], want, 1e-3, 1e-7); msg != "" {
				res.status, res.reason = "fail", fmt.Sprintf("%s output %q: %s", filepath.Base(set), o.Name, msg)
				return res
			}
		}
	}
	res.status = "pass"
	return res
}

// compareTensors checks |got-want| <= atol + rtol*|want| element-wise and
// that shapes and types agree; it returns "" when they match.
func compareTensors(got, want *Tensor, rtol, atol float64) string {
	if got == nil {
		return "missing"
	}
	if !slices.Equal(got.Shape, want.Shape) && sizeOf(got.Shape) != sizeOf(want.Shape) {
		return fmt.Sprintf("shape %v, want %v", got.Shape, want.Shape)
	}
	if !slices.Equal(got.Shape, want.Shape) {
		return fmt.Sprintf("shape %v, want %v", got.Shape, want.Shape)
	}
	if got.DType.IsFloat() != want.DType.IsFloat() {
		return fmt.Sprintf("type %s, want %s", got.DType, want.DType)
	}
	if !got.DType.IsFloat() {
		for i := range want.I {
			if got.I[i] != want.I[i] {
				return fmt.Sprintf("element %d = %d, want %d", i, got.I[i], want.I[i])
			}
		}
		return ""
	}
	for i := range want.F {
		g, w := float64(got.F[i]), float64(want.F[i])
		if math.IsNaN(w) && math.IsNaN(g) || g == w {
			continue
		}
		if math.Abs(g-w) > atol+rtol*math.Abs(w) || math.IsNaN(g) {
			return fmt.Sprintf("element %d = %g, want %g", i, g, w)
		}
	}
	return ""
}

func TestConformance(t *testing.T) {
	if _, err := os.Stat(conformanceRoot); err != nil {
		testutil.Skipf(t, "conformance data missing: %v (install Debian package libonnx-testdata)", err)
	}
	var dirs []string
	for _, sub := range []string{"node", "pytorch-converted", "pytorch-operator", "simple"} {
		d, _ := filepath.Glob(filepath.Join(conformanceRoot, sub, "test_*"))
		dirs = append(dirs, d...)
	}
	perOp := map[string]*count{}
	var failures, skips []string
	total := map[string]int{}
	for _, dir := range dirs {
		r := runCase(dir)
		name := filepath.Base(filepath.Dir(dir)) + "/" + filepath.Base(dir)
		total[r.status]++
		if r.status == "skip-op" {
			continue
		}
		for _, op := range r.ops {
			c := perOp[op]
			if c == nil {
				c = &count{}
				perOp[op] = c
			}
			switch r.status {
			case "pass":
				c.ran++
				c.passed++
			case "fail":
				c.ran++
			case "skip-allowed":
				c.skipped++
			}
		}
		switch r.status {
		case "fail":
			failures = append(failures, name+": "+r.reason)
		case "skip-allowed":
			skips = append(skips, name+": "+r.reason)
		}
	}
	var ops []string
	for op := range perOp {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-20s %5s %6s %7s\n", "operator", "ran", "passed", "skipped")
	for _, op := range ops {
		c := perOp[op]
		fmt.Fprintf(&sb, "%-20s %5d %6d %7d\n", op, c.ran, c.passed, c.skipped)
	}
	fmt.Fprintf(&sb, "cases: %d passed, %d failed, %d skipped (allowed reason), %d skipped (unsupported operator)\n",
		total["pass"], total["fail"], total["skip-allowed"], total["skip-op"])
	t.Log(sb.String())
	for _, s := range skips {
		t.Logf("skipped %s", s)
	}
	for _, f := range failures {
		t.Errorf("FAIL %s", f)
	}
	for _, op := range SupportedOps() {
		want, ok := minPasses[op]
		if !ok {
			t.Errorf("%s: no minimum number of passing conformance cases in minPasses", op)
			continue
		}
		if got := perOp[op]; got == nil && want > 0 || got != nil && got.passed < want {
			t.Errorf("%s: %d conformance cases pass, want at least %d", op, passedOf(got), want)
		}
	}
}

func passedOf(c *count) int {
	if c == nil {
		return 0
	}
	return c.passed
}
