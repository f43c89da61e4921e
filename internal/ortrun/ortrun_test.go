package ortrun

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

const conformance = "/usr/share/libonnx-testdata/data/node"

// conformanceCase is one ONNX conformance case: its model and the first
// data set's inputs and expected outputs, keyed by graph input/output name.
type conformanceCase struct {
	model   string
	inputs  map[string]Tensor
	outputs map[string]Tensor
}

func readTensor(t *testing.T, path string) Tensor {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tp := &onnxpb.TensorProto{}
	if err := proto.Unmarshal(b, tp); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var data []float32
	switch onnxio.DataType(tp.GetDataType()) {
	case onnxio.Int64, onnxio.Int32, onnxio.Bool:
		ints, err := onnxio.Int64s(tp)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, v := range ints {
			data = append(data, float32(v))
		}
	default:
		data, err = onnxio.Float32s(tp)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	return Tensor{Shape: tp.GetDims(), Data: data}
}

func loadCase(t *testing.T, name string) conformanceCase {
	t.Helper()
	dir := filepath.Join(conformance, name)
	model := filepath.Join(dir, "model.onnx")
	if _, err := os.Stat(model); err != nil {
		if testutil.InCI() {
			t.Fatalf("conformance case %s: %v (install Debian's libonnx-testdata)", name, err)
		}
		testutil.Skipf(t, "conformance case %s missing (install Debian's libonnx-testdata)", name)
	}
	m, err := onnxio.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	inits := map[string]bool{}
	for _, in := range m.Graph.Initializer {
		inits[in.GetName()] = true
	}
	c := conformanceCase{model: model, inputs: map[string]Tensor{}, outputs: map[string]Tensor{}}
	i := 0
	for _, in := range m.Graph.Input {
		if inits[in.GetName()] {
			continue
		}
		c.inputs[in.GetName()] = readTensor(t, filepath.Join(dir, "test_data_set_0", fmt.Sprintf("input_%d.pb", i)))
		i++
	}
	for i, out := range m.Graph.Output {
		c.outputs[out.GetName()] = readTensor(t, filepath.Join(dir, "test_data_set_0", fmt.Sprintf("output_%d.pb", i)))
	}
	return c
}

func compare(t *testing.T, label string, got, want Tensor) {
	t.Helper()
	if fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) {
		t.Fatalf("%s: shape %v, want %v", label, got.Shape, want.Shape)
	}
	if len(got.Data) != len(want.Data) {
		t.Fatalf("%s: %d values, want %d", label, len(got.Data), len(want.Data))
	}
	for i := range want.Data {
		if d := math.Abs(float64(got.Data[i] - want.Data[i])); d > 1e-5+1e-5*math.Abs(float64(want.Data[i])) {
			t.Fatalf("%s[%d] = %g, want %g", label, i, got.Data[i], want.Data[i])
		}
	}
}

func TestRunConformance(t *testing.T) {
	testutil.RequireORT(t)
	for _, name := range []string{
		"test_relu",
		"test_add",
		"test_matmul_2d",
		"test_conv_with_strides_padding",
		"test_averagepool_2d_default",
		"test_globalaveragepool",
		"test_batchnorm_example",
		"test_gemm_default_single_elem_vector_bias",
		"test_softmax_axis_1",
		"test_argmax_default_axis_example", // int64 output, returned as float32
	} {
		t.Run(name, func(t *testing.T) {
			c := loadCase(t, name)
			got, err := Run(c.model, c.inputs, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.outputs) {
				t.Fatalf("got %d outputs, want %d", len(got), len(c.outputs))
			}
			for name, want := range c.outputs {
				compare(t, name, got[name], want)
			}
		})
	}
}

func TestSessionOptions(t *testing.T) {
	testutil.RequireORT(t)
	c := loadCase(t, "test_conv_with_strides_padding")
	for _, opts := range []Options{
		{},
		{IntraOpThreads: 2, Optimization: OptDisabled},
		{Optimization: OptBasic},
		{Optimization: OptExtended},
	} {
		t.Run(fmt.Sprintf("threads=%d,opt=%s", opts.IntraOpThreads, opts.Optimization), func(t *testing.T) {
			s, err := NewSession(c.model, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// Repeated and concurrent runs give the reference output.
			var wg sync.WaitGroup
			errs := make([]error, 4)
			outs := make([]map[string]Tensor, 4)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					outs[i], errs[i] = s.Run(c.inputs, nil)
				}()
			}
			wg.Wait()
			for i := range errs {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				for name, want := range c.outputs {
					compare(t, name, outs[i][name], want)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Run(c.inputs, nil); err == nil || !strings.Contains(err.Error(), "closed") {
				t.Errorf("Run after Close: %v, want a 'session is closed' error", err)
			}
		})
	}
}

func TestInputOutputInfo(t *testing.T) {
	testutil.RequireORT(t)
	c := loadCase(t, "test_conv_with_strides_padding")
	ins, outs, err := InputOutputInfo(c.model)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 2 || len(outs) != 1 {
		t.Fatalf("got %d inputs and %d outputs, want 2 and 1: %+v %+v", len(ins), len(outs), ins, outs)
	}
	if ins[0].Name != "x" || ins[0].DataType != "float" || fmt.Sprint(ins[0].Shape) != "[1 1 7 5]" {
		t.Errorf("input 0 = %+v, want x float [1 1 7 5]", ins[0])
	}
	if ins[1].Name != "W" || fmt.Sprint(ins[1].Shape) != "[1 1 3 3]" {
		t.Errorf("input 1 = %+v, want W [1 1 3 3]", ins[1])
	}
	if outs[0].Name != "y" || fmt.Sprint(outs[0].Shape) != "[1 1 4 3]" {
		t.Errorf("output 0 = %+v, want y [1 1 4 3]", outs[0])
	}
	v, err := Version()
	if err != nil || !strings.HasPrefix(v, "1.") {
		t.Errorf("Version() = %q, %v", v, err)
	}
}

func TestRunErrors(t *testing.T) {
	testutil.RequireORT(t)
	c := loadCase(t, "test_relu")
	x := c.inputs["x"]
	garbage := filepath.Join(t.TempDir(), "garbage.onnx")
	if err := os.WriteFile(garbage, []byte("not an onnx model"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		model   string
		inputs  map[string]Tensor
		outputs []string
		want    string
	}{
		{"missing model", filepath.Join(t.TempDir(), "absent.onnx"), c.inputs, nil, "absent.onnx"},
		{"garbage model", garbage, c.inputs, nil, "garbage.onnx"},
		{"missing input", c.model, map[string]Tensor{}, nil, `missing input "x"`},
		{"unknown input", c.model, map[string]Tensor{"x": x, "z": x}, nil, `"z" is not an input`},
		{"unknown output", c.model, c.inputs, []string{"nope"}, `"nope" is not an output`},
		{"data length", c.model, map[string]Tensor{"x": {Shape: x.Shape, Data: x.Data[1:]}}, nil, "needs 60 values"},
		{"wrong shape", c.model, map[string]Tensor{"x": {Shape: []int64{5, 4, 3}, Data: x.Data}}, nil, "does not match"},
		{"wrong rank", c.model, map[string]Tensor{"x": {Shape: []int64{60}, Data: x.Data}}, nil, "rank 1"},
		{"negative dim", c.model, map[string]Tensor{"x": {Shape: []int64{-3, 4, -5}, Data: x.Data}}, nil, "negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(tc.model, tc.inputs, tc.outputs)
			if err == nil {
				t.Fatal("Run succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestParseOptLevel(t *testing.T) {
	for _, l := range []OptLevel{OptAll, OptExtended, OptBasic, OptDisabled} {
		got, err := ParseOptLevel(l.String())
		if err != nil || got != l {
			t.Errorf("ParseOptLevel(%q) = %v, %v", l.String(), got, err)
		}
	}
	if _, err := ParseOptLevel("fast"); err == nil {
		t.Error("ParseOptLevel(\"fast\") succeeded")
	}
}
