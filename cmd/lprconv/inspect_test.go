package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// pointwiseModel writes a model with a dynamic-batch input [N,c,8,8], a 1x1
// c->c Conv with bias (an LPR candidate) and a Relu, and returns its path.
func pointwiseModel(t *testing.T, dir string, c int64) string {
	t.Helper()
	w := make([]float32, c*c)
	for i := range w {
		w[i] = float32(i%7) - 3
	}
	b := make([]float32, c)
	dim := func(v int64) *onnxpb.TensorShapeProto_Dimension {
		if v < 0 {
			return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}}
		}
		return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: v}}
	}
	info := func(name string, dims ...int64) *onnxpb.ValueInfoProto {
		s := &onnxpb.TensorShapeProto{}
		for _, d := range dims {
			s.Dim = append(s.Dim, dim(d))
		}
		return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxio.Float), Shape: s}}}}
	}
	m := &onnxpb.ModelProto{
		IrVersion: 7, ProducerName: "test", OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 13}},
		Graph: &onnxpb.GraphProto{
			Name: "pw",
			Node: []*onnxpb.NodeProto{
				{OpType: "Conv", Name: "pw", Input: []string{"x", "w", "b"}, Output: []string{"y"}},
				{OpType: "Relu", Name: "relu", Input: []string{"y"}, Output: []string{"out"}},
			},
			Initializer: []*onnxpb.TensorProto{onnxio.NewFloat32("w", []int64{c, c, 1, 1}, w), onnxio.NewFloat32("b", []int64{c}, b)},
			Input:       []*onnxpb.ValueInfoProto{info("x", -1, c, 8, 8)},
			Output:      []*onnxpb.ValueInfoProto{info("out", -1, c, 8, 8)},
		},
	}
	p := filepath.Join(dir, "pw.onnx")
	if err := onnxio.Save(p, m, onnxio.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCLI(args ...string) (int, string, string) {
	args = latencyOff(args)
	var out, errOut bytes.Buffer
	code := run(append([]string{"lprconv"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestInspectJSON(t *testing.T) {
	p := pointwiseModel(t, t.TempDir(), 16)
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"inspect", p, "--json", "--input-shape", "2,16,8,8"},
		{"inspect", "--json", "--input-shape=x=2x16x8x8", p},
	} {
		code, out, errOut := runCLI(args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		var s struct {
			Params    int64 `json:"params"`
			MACs      int64 `json:"macs"`
			FileBytes int64 `json:"file_bytes"`
			Opset     int64 `json:"opset"`
			Layers    []struct {
				Name          string  `json:"name"`
				Op            string  `json:"op"`
				Kernel        []int64 `json:"kernel"`
				Group         int64   `json:"group"`
				InChannels    int64   `json:"in_channels"`
				OutChannels   int64   `json:"out_channels"`
				Params        int64   `json:"params"`
				MACs          int64   `json:"macs"`
				Candidate     bool    `json:"candidate"`
				BreakEvenRank int     `json:"break_even_rank"`
			} `json:"layers"`
		}
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("%v: output is not one JSON object: %v\n%s", args, err, out)
		}
		// 16x16 weight + 16 bias; MACs 2 images * 8*8 pixels * 16*16.
		if s.Params != 272 || s.MACs != 2*64*256 || s.FileBytes != st.Size() || s.Opset != 13 {
			t.Errorf("%v: params %d macs %d file %d opset %d", args, s.Params, s.MACs, s.FileBytes, s.Opset)
		}
		if len(s.Layers) != 1 {
			t.Fatalf("%v: %d layers, want 1", args, len(s.Layers))
		}
		l := s.Layers[0]
		if l.Name != "pw" || l.Op != "Conv" || len(l.Kernel) != 2 || l.Group != 1 || l.InChannels != 16 || l.OutChannels != 16 ||
			l.Params != 272 || l.MACs != 2*64*256 || !l.Candidate || l.BreakEvenRank != 7 {
			t.Errorf("%v: layer %+v", args, l)
		}
	}
}

func TestInspectTable(t *testing.T) {
	p := pointwiseModel(t, t.TempDir(), 16)
	code, out, errOut := runCLI("inspect", p)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"pw", "16->16", "8x8", "yes, r<=7", "params:      272", "opset:       13", "candidates:  1", "producer:    test"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestInspectErrors(t *testing.T) {
	dir := t.TempDir()
	p := pointwiseModel(t, dir, 4)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"inspect"}, 2, "expected one MODEL"},
		{[]string{"inspect", p, p}, 2, "expected one MODEL"},
		{[]string{"inspect", p, "--bogus"}, 2, "unknown flag"},
		{[]string{"inspect", p, "--input-shape", "1,a"}, 2, "not a positive integer"},
		{[]string{"inspect", p, "--input-shape", "1,4,9,9"}, 1, "fixes dim 2 at 8"},
		{[]string{"inspect", filepath.Join(dir, "missing.onnx")}, 1, "missing.onnx"},
	} {
		code, _, errOut := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

// latencyOff adds --no-latency to a compress command that names no
// latency flag: what compress measures in ONNX Runtime depends on the
// machine, and with a runtime present latency-aware planning may keep
// layers, so the tests that are not about latency turn it off (the
// latency tests name a latency flag).
func latencyOff(args []string) []string {
	if len(args) == 0 || args[0] != "compress" {
		return args
	}
	for _, a := range args {
		for _, f := range []string{"--ort-lib", "--no-latency", "--keep-slower", "--latency-"} {
			if strings.HasPrefix(a, f) {
				return args
			}
		}
	}
	return append(append([]string(nil), args...), "--no-latency")
}
