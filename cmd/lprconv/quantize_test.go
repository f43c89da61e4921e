package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/quantize"
)

// TestQuantizeCommand writes the int8 and fp16 forms of the MobileNetV1
// fixture through the command line and checks the report and the files
// (onnx.checker, operator and element types).
func TestQuantizeCommand(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		prec string
		args []string
		op   string // an operator the output must hold
	}{
		{"int8", []string{"--data", "../../testdata/images/train", "--mean", "0.286", "--std", "0.353", "--samples", "64", "--method", "percentile"}, "QuantizeLinear"},
		{"fp16", nil, "Cast"},
	} {
		out := filepath.Join(dir, c.prec+".onnx")
		args := append([]string{"quantize", fixtureModel, "-o", out, "--precision", c.prec, "--json"}, c.args...)
		code, stdout, errOut := runCLI(args...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", c.prec, code, errOut)
		}
		var r quantizeReport
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("%s: bad JSON %q: %v", c.prec, stdout, err)
		}
		st, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if r.Precision != c.prec || r.BytesAfter != st.Size() || r.BytesAfter >= r.BytesBefore/3*2 || (c.prec == "int8") != (r.Int8 != nil) || (c.prec == "fp16") != (r.FP16 != nil) {
			t.Errorf("%s: report %+v (file %d bytes)", c.prec, r, st.Size())
		}
		if c.prec == "int8" && (r.Method != "percentile" || r.Int8.Nodes["Conv"] != 27 || r.Int8.FoldedRelu != 27) {
			t.Errorf("int8: report %+v %+v", r, r.Int8)
		}
		m, err := onnxio.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, n := range m.GetGraph().GetNode() {
			found = found || n.GetOpType() == c.op
		}
		if !found {
			t.Errorf("%s: output holds no %s node", c.prec, c.op)
		}
		if in := m.GetGraph().GetInput()[0].GetType().GetTensorType().GetElemType(); onnxio.DataType(in) != onnxio.Float {
			t.Errorf("%s: input type %d, want float32", c.prec, in)
		}
		if md, ok, err := quantize.ReadMetadata(m); err != nil || !ok || md.Precision != c.prec || (c.prec == "int8" && (md.Method != "percentile" || md.Samples != 64 || md.Activations != "uint8")) {
			t.Errorf("%s: metadata %+v, %v, %v", c.prec, md, ok, err)
		}
		testutil.CheckONNX(t, out)
	}
	// Text output.
	code, stdout, errOut := runCLI("quantize", fixtureModel, "-o", filepath.Join(dir, "text.onnx"), "--precision", "fp16")
	if code != 0 || !strings.Contains(stdout, "float32 nodes: Gemm 1") || !strings.Contains(stdout, "float16 nodes: Conv 27") {
		t.Errorf("text output: exit %d, %q, %q", code, stdout, errOut)
	}
}

func TestQuantizeErrors(t *testing.T) {
	dir := t.TempDir()
	exists := filepath.Join(dir, "exists.onnx")
	if err := os.WriteFile(exists, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.onnx")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"quantize"}, "expected one IN"},
		{[]string{"quantize", fixtureModel}, "-o OUT"},
		{[]string{"quantize", fixtureModel, "-o", fixtureModel}, "is the input"},
		{[]string{"quantize", fixtureModel, "-o", exists}, "--overwrite"},
		{[]string{"quantize", fixtureModel, "-o", dir}, dir},
		{[]string{"quantize", fixtureModel, "-o", filepath.Join(dir, "no", "x.onnx")}, "does not exist"},
		{[]string{"quantize", filepath.Join(dir, "missing.onnx"), "-o", out}, "missing.onnx"},
		{[]string{"quantize", fixtureModel, "-o", out}, "--data is required"},
		{[]string{"quantize", fixtureModel, "-o", out, "--precision", "int4"}, "--precision"},
		{[]string{"quantize", fixtureModel, "-o", out, "--data", fixtureImages, "--method", "entropy"}, "--method"},
		{[]string{"quantize", fixtureModel, "-o", out, "--data", fixtureImages, "--activations", "int16"}, "--activations"},
		{[]string{"quantize", fixtureModel, "-o", out, "--data", fixtureImages, "--samples", "0"}, "--samples"},
		{[]string{"quantize", "../../testdata/models/mobilenetv1_op9.onnx", "-o", out, "--data", fixtureImages}, "opset 9"},
	} {
		code, _, errOut := runCLI(tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want an error mentioning %q", tc.args, code, errOut, tc.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a failed run wrote %s", out)
	}
}
