package torchexport

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
)

func TestNamer(t *testing.T) {
	n := NewNamer()
	for _, c := range []struct{ prefix, name, want string }{
		{"w_", "features.0.weight", "w_features_0_weight"},
		{"w_", "onnx::Conv_250", "w_onnx__Conv_250"},
		{"w_", "features_0.weight", "w_features_0_weight_2"}, // collides with the first
		{"w_", "features.0.weight", "w_features_0_weight"},   // same name, same identifier
		{"x_", "input.1", "x_input_1"},
		{"w_", "/lpr_u/α", "w__lpr_u__"},
		{"c_", "", "c_"},
	} {
		if got := n.Name(c.prefix, c.name); got != c.want {
			t.Errorf("Name(%q, %q) = %q, want %q", c.prefix, c.name, got, c.want)
		}
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	w := &Weights{Tensors: map[string]*STensor{
		"a.weight": {Shape: []int64{2, 3}, F: []float32{1, -2, 3.5, float32(math.Pi), 0, -0.25}},
		"b":        {Shape: []int64{}, F: []float32{7}},
		"shape":    {Shape: []int64{3}, I: []int64{1, -1, 1 << 40}},
	}, Metadata: map[string]string{"format": Format}}
	p := filepath.Join(t.TempDir(), "w.safetensors")
	if err := WriteSafetensors(p, w); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSafetensors(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Metadata["format"] != Format || !slices.Equal(got.Names(), w.Names()) {
		t.Fatalf("read back %v %v", got.Names(), got.Metadata)
	}
	for n, want := range w.Tensors {
		g := got.Tensors[n]
		if !slices.Equal(g.Shape, want.Shape) || !slices.Equal(g.F, want.F) || !slices.Equal(g.I, want.I) {
			t.Errorf("%s: read %+v, want %+v", n, g, want)
		}
	}
}

// header builds a safetensors file from a JSON header and data bytes.
func header(json string, data ...byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(json)))
	return append(append(b, json...), data...)
}

func TestDecodeSafetensorsRejects(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"short", []byte{1, 2}, "shorter than"},
		{"header past end", binary.LittleEndian.AppendUint64(nil, 1000), "header length"},
		{"bad json", header("{x"), "header"},
		{"dtype", header(`{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 0), "not supported"},
		{"offsets past data", header(`{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}`, 0, 0, 0, 0), "outside"},
		{"size mismatch", header(`{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 0, 0, 0, 0), "bytes for 2"},
		{"negative dim", header(`{"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 0, 0, 0, 0), "shape"},
	} {
		_, err := DecodeSafetensors(c.data)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func TestImport(t *testing.T) {
	m, err := onnxio.Load(testutil.Fixture(t, "mobilenetv1.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	init := m.GetGraph().GetInitializer()[0]
	name, dims := init.GetName(), init.GetDims()
	n, _ := onnxio.ShapeSize(dims)
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = float32(i) / 7
	}
	ok := &Weights{Tensors: map[string]*STensor{name: {Shape: dims, F: vals}, ProbeInput: {Shape: []int64{1}, F: []float32{1}}}}
	out, names, err := Import(m, ok)
	if err != nil {
		t.Fatal(err)
	}
	got, err := onnxio.Float32s(out.GetGraph().GetInitializer()[0])
	if err != nil || !slices.Equal(names, []string{name}) || !slices.Equal(got, vals) {
		t.Fatalf("import: names %v, values equal %v, err %v", names, slices.Equal(got, vals), err)
	}
	before, _ := onnxio.Float32s(m.GetGraph().GetInitializer()[0])
	if slices.Equal(before, vals) {
		t.Fatal("Import modified its input model")
	}
	for _, c := range []struct {
		name string
		w    *Weights
		want string
	}{
		{"unknown name", &Weights{Tensors: map[string]*STensor{"nope": {Shape: []int64{1}, F: []float32{1}}}}, "not an initializer"},
		{"shape", &Weights{Tensors: map[string]*STensor{name: {Shape: []int64{int64(n)}, F: vals}}}, "has shape"},
		{"kind", &Weights{Tensors: map[string]*STensor{name: {Shape: dims, I: make([]int64, n)}}}, "data type"},
		{"nan", &Weights{Tensors: map[string]*STensor{name: {Shape: dims, F: append([]float32{float32(math.NaN())}, vals[1:]...)}}}, "NaN"},
		{"only probes", &Weights{Tensors: map[string]*STensor{ProbeOutput: {Shape: []int64{1}, F: []float32{1}}}}, "no tensor of the model"},
	} {
		_, _, err := Import(m, c.w)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func TestRelMaxAbs(t *testing.T) {
	for _, c := range []struct {
		got, want []float32
		rel       float64
	}{
		{[]float32{1, 2}, []float32{1, 2}, 0},
		{[]float32{1, 2.5}, []float32{1, -2}, 4.5 / 2},
		{[]float32{1}, []float32{1, 2}, math.Inf(1)},
		{[]float32{float32(math.NaN())}, []float32{1}, math.Inf(1)},
	} {
		if got := RelMaxAbs(c.got, c.want); got != c.rel {
			t.Errorf("RelMaxAbs(%v, %v) = %v, want %v", c.got, c.want, got, c.rel)
		}
	}
}
