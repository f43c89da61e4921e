package onnxio

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

func seq(n int, scale float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = scale * float32((i*37)%101-50)
	}
	return out
}

// mlpModel returns X[1,8] -> MatMul W1[8,200] -> Add B1 -> Relu -> MatMul
// W2[200,100] -> Add B2 -> Reshape to [10,10] -> Y. B1 is stored in
// float_data and the Reshape shape in int64_data (typed fields); W2 is over
// 64 KiB.
func mlpModel() *onnxpb.ModelProto {
	b1 := &onnxpb.TensorProto{Name: "B1", Dims: []int64{200}, DataType: int32(Float), FloatData: seq(200, 0.01)}
	shape := &onnxpb.TensorProto{Name: "shape", Dims: []int64{2}, DataType: int32(Int64), Int64Data: []int64{10, 10}}
	return &onnxpb.ModelProto{
		IrVersion:    7,
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Version: 13}},
		ProducerName: "lprconv-test",
		Graph: &onnxpb.GraphProto{
			Name: "mlp",
			Initializer: []*onnxpb.TensorProto{
				NewFloat32("W1", []int64{8, 200}, seq(1600, 0.02)),
				b1,
				NewFloat32("W2", []int64{200, 100}, seq(20000, 0.003)),
				NewFloat32("B2", []int64{100}, seq(100, 0.05)),
				shape,
			},
			Input:  []*onnxpb.ValueInfoProto{floatInfo("X", 1, 8)},
			Output: []*onnxpb.ValueInfoProto{floatInfo("Y", 10, 10)},
			Node: []*onnxpb.NodeProto{
				{Name: "mm1", OpType: "MatMul", Input: []string{"X", "W1"}, Output: []string{"h1"}},
				{Name: "add1", OpType: "Add", Input: []string{"h1", "B1"}, Output: []string{"h2"}},
				{Name: "relu", OpType: "Relu", Input: []string{"h2"}, Output: []string{"h3"}},
				{Name: "mm2", OpType: "MatMul", Input: []string{"h3", "W2"}, Output: []string{"h4"}},
				{Name: "add2", OpType: "Add", Input: []string{"h4", "B2"}, Output: []string{"h5"}},
				{Name: "reshape", OpType: "Reshape", Input: []string{"h5", "shape"}, Output: []string{"Y"}},
			},
		},
	}
}

func externalEntries(t *onnxpb.TensorProto) (loc string, off, length int64) {
	for _, kv := range t.ExternalData {
		switch kv.Key {
		case "location":
			loc = kv.Value
		case "offset":
			off, _ = strconv.ParseInt(kv.Value, 10, 64)
		case "length":
			length, _ = strconv.ParseInt(kv.Value, 10, 64)
		}
	}
	return
}

func TestSaveExternalData(t *testing.T) {
	cases := []struct {
		name      string
		threshold int
		external  []string // initializers expected in the data file
	}{
		{"default threshold", 0, []string{"W1", "W2"}},
		{"threshold 401", 401, []string{"W1", "B1", "W2"}},
		{"threshold 400", 400, []string{"W1", "B1", "W2", "B2"}},
		{"threshold 1", 1, []string{"W1", "B1", "W2", "B2"}}, // small int64 shape stays inline
		{"threshold above all", 1 << 20, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := mlpModel()
			before := proto.Clone(m)
			dir := t.TempDir()
			path := filepath.Join(dir, "mlp.onnx")
			if err := Save(path, m, SaveOptions{ExternalData: true, ExternalThreshold: c.threshold}); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(m, before) {
				t.Fatal("Save modified the model passed in")
			}
			// The model file refers to the data file for exactly the
			// expected tensors, at aligned offsets.
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			onDisk, err := Decode(raw)
			if err != nil {
				t.Fatal(err)
			}
			dataPath := filepath.Join(dir, "mlp.onnx.data")
			st, statErr := os.Stat(dataPath)
			if len(c.external) == 0 {
				if statErr == nil {
					t.Errorf("%s written although no tensor reaches the threshold", dataPath)
				}
			} else if statErr != nil {
				t.Fatal(statErr)
			}
			var ext []string
			var end int64
			for _, tp := range onDisk.Graph.Initializer {
				if !External(tp) {
					continue
				}
				ext = append(ext, tp.Name)
				loc, off, length := externalEntries(tp)
				n, _ := NumElements(tp)
				want, _ := RawSize(DataType(tp.DataType), n)
				align := int64(64)
				if want >= 64<<10 {
					align = 4096
				}
				if loc != "mlp.onnx.data" || off%align != 0 || length != want || off < end || len(tp.RawData) != 0 || len(tp.FloatData) != 0 || len(tp.Int64Data) != 0 {
					t.Errorf("tensor %s: location %q offset %d length %d (want mlp.onnx.data, %d-aligned, %d bytes, after %d, no inline data)", tp.Name, loc, off, length, align, want, end)
				}
				end = off + length
			}
			if strings.Join(ext, ",") != strings.Join(c.external, ",") {
				t.Errorf("external tensors %v, want %v", ext, c.external)
			}
			if len(c.external) > 0 && st.Size() != end {
				t.Errorf("data file has %d bytes, want %d", st.Size(), end)
			}
			// Loading brings every value back.
			back, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(back, rawForm(t, m, c.threshold)) {
				t.Error("model changed in a round trip through external data")
			}
			for i, tp := range m.Graph.Initializer {
				a, errA := Float32s(tp)
				b, errB := Float32s(back.Graph.Initializer[i])
				if errA == nil && (errB != nil || !equalFloats(a, b)) {
					t.Errorf("tensor %s: values differ after the round trip (%v)", tp.Name, errB)
				}
				if errA != nil {
					x, _ := Int64s(tp)
					y, err := Int64s(back.Graph.Initializer[i])
					if err != nil || len(x) != len(y) || x[0] != y[0] || x[1] != y[1] {
						t.Errorf("tensor %s: values differ after the round trip (%v)", tp.Name, err)
					}
				}
			}
			// Saving again in place replaces both files consistently.
			if err := Save(path, back, SaveOptions{ExternalData: true, ExternalThreshold: c.threshold}); err != nil {
				t.Fatal(err)
			}
			if again, err := Load(path); err != nil || !proto.Equal(again, back) {
				t.Errorf("second save in place: %v", err)
			}
		})
	}
}

func equalFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestExternalDataDownstream checks the files Save writes with other
// readers: ONNX's checker (which loads the data file) and ONNX Runtime
// (which must compute the same output from the inline and the external
// model).
func TestExternalDataDownstream(t *testing.T) {
	dir := t.TempDir()
	inline := filepath.Join(dir, "inline.onnx")
	external := filepath.Join(dir, "external.onnx")
	if err := Save(inline, mlpModel(), SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := Save(external, mlpModel(), SaveOptions{ExternalData: true, ExternalThreshold: 1}); err != nil {
		t.Fatal(err)
	}
	t.Run("onnx.checker", func(t *testing.T) {
		testutil.CheckONNX(t, inline)
		testutil.CheckONNX(t, external)
	})
	t.Run("onnxruntime", func(t *testing.T) {
		testutil.RequireORT(t)
		in := map[string]ortrun.Tensor{"X": {Shape: []int64{1, 8}, Data: seq(8, 0.3)}}
		a, err := ortrun.Run(inline, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ortrun.Run(external, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Reference computed here from the weights.
		w1, w2 := seq(1600, 0.02), seq(20000, 0.003)
		b1, b2 := seq(200, 0.01), seq(100, 0.05)
		x := seq(8, 0.3)
		h := make([]float64, 200)
		for j := range h {
			s := float64(b1[j])
			for i := 0; i < 8; i++ {
				s += float64(x[i]) * float64(w1[i*200+j])
			}
			h[j] = math.Max(s, 0)
		}
		for k := 0; k < 100; k++ {
			s := float64(b2[k])
			for j := 0; j < 200; j++ {
				s += h[j] * float64(w2[j*100+k])
			}
			got := float64(b["Y"].Data[k])
			if math.Abs(got-s) > 1e-4*(1+math.Abs(s)) {
				t.Fatalf("external model Y[%d] = %g, want %g", k, got, s)
			}
			if a["Y"].Data[k] != b["Y"].Data[k] {
				t.Fatalf("Y[%d]: inline %g, external %g", k, a["Y"].Data[k], b["Y"].Data[k])
			}
		}
	})
}

// TestSaveSwitchesToExternalOverLimit checks that a model over the size
// limit is written with external data without being asked.
func TestSaveSwitchesToExternalOverLimit(t *testing.T) {
	m := mlpModel()
	size := proto.Size(m)
	for _, c := range []struct {
		limit        int
		wantExternal bool
	}{
		{size + 1, false},
		{size, false},
		{size - 1, true},
		{MaxFileBytes, false},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "m.onnx")
		if err := save(path, m, SaveOptions{}, c.limit); err != nil {
			t.Fatal(err)
		}
		_, err := os.Stat(filepath.Join(dir, "m.onnx.data"))
		if got := err == nil; got != c.wantExternal {
			t.Errorf("limit %d (model %d bytes): external data written = %v, want %v", c.limit, size, got, c.wantExternal)
		}
		if back, err := Load(path); err != nil || !proto.Equal(back, rawForm(t, m, 0)) && c.wantExternal || !c.wantExternal && !proto.Equal(back, m) {
			t.Errorf("limit %d: round trip failed: %v", c.limit, err)
		}
	}
	// A model that stays over the limit even with its tensors moved out is
	// refused, and nothing is written.
	dir := t.TempDir()
	path := filepath.Join(dir, "m.onnx")
	err := save(path, m, SaveOptions{}, 100)
	if err == nil || !strings.Contains(err.Error(), "threshold") {
		t.Errorf("save over the limit after moving tensors: %v, want an error suggesting a lower threshold", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed save left files: %v", entries)
	}
}

// externalCase writes, into a fresh folder, a model Y = X + C whose C [2]
// float is stored externally with the given entries, plus data files.
type externalCase struct {
	name    string
	entries [][2]string
	setup   func(t *testing.T, dir string) // creates data files
	dtype   DataType
	dims    []int64
	second  bool   // a second tensor D with the same entries
	want    string // part of the error, or "" for success
}

func writeData(t *testing.T, path string, vals ...float32) {
	t.Helper()
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadExternalDataErrors(t *testing.T) {
	outside := t.TempDir()
	writeData(t, filepath.Join(outside, "secret.bin"), 7, 8)
	std := func(t *testing.T, dir string) { writeData(t, filepath.Join(dir, "c.bin"), 1.5, -2) }
	cases := []externalCase{
		{name: "valid", entries: [][2]string{{"location", "c.bin"}, {"offset", "0"}, {"length", "8"}}, setup: std},
		{name: "valid without offset and length", entries: [][2]string{{"location", "c.bin"}}, setup: std},
		{name: "valid in subfolder", entries: [][2]string{{"location", "sub/c.bin"}, {"checksum", "ignored"}}, setup: func(t *testing.T, dir string) {
			writeData(t, filepath.Join(dir, "sub", "c.bin"), 1.5, -2)
		}},
		{name: "valid symlink inside the folder", entries: [][2]string{{"location", "link.bin"}}, setup: func(t *testing.T, dir string) {
			std(t, dir)
			if err := os.Symlink("c.bin", filepath.Join(dir, "link.bin")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "parent folder", entries: [][2]string{{"location", "../secret.bin"}}, setup: std, want: "leaves the model's folder"},
		{name: "parent through subfolder", entries: [][2]string{{"location", "sub/../../secret.bin"}}, setup: std, want: "leaves the model's folder"},
		{name: "absolute path", entries: [][2]string{{"location", filepath.Join(outside, "secret.bin")}}, setup: std, want: "absolute path"},
		{name: "symlink outside", entries: [][2]string{{"location", "evil.bin"}}, setup: func(t *testing.T, dir string) {
			if err := os.Symlink(filepath.Join(outside, "secret.bin"), filepath.Join(dir, "evil.bin")); err != nil {
				t.Fatal(err)
			}
		}, want: "outside the model's folder"},
		{name: "symlinked subfolder outside", entries: [][2]string{{"location", "sub/secret.bin"}}, setup: func(t *testing.T, dir string) {
			if err := os.Symlink(outside, filepath.Join(dir, "sub")); err != nil {
				t.Fatal(err)
			}
		}, want: "outside the model's folder"},
		{name: "missing file with a newline in its name", entries: [][2]string{{"location", "a\nb.bin"}}, setup: std, want: `a\nb.bin" does not exist`},
		{name: "missing file", entries: [][2]string{{"location", "absent.bin"}}, setup: std, want: "does not exist"},
		{name: "data file is a folder", entries: [][2]string{{"location", "sub"}}, setup: func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, want: "not a regular file"},
		{name: "empty location", entries: [][2]string{{"location", ""}}, setup: std, want: "no location"},
		{name: "no location", entries: [][2]string{{"offset", "0"}}, setup: std, want: "no location"},
		{name: "offset past the end", entries: [][2]string{{"location", "c.bin"}, {"offset", "100"}}, setup: std, want: "outside data file"},
		{name: "range past the end", entries: [][2]string{{"location", "c.bin"}, {"offset", "4"}, {"length", "8"}}, setup: std, want: "outside data file"},
		{name: "huge offset", entries: [][2]string{{"location", "c.bin"}, {"offset", "9223372036854775807"}}, setup: std, want: "outside data file"},
		{name: "length disagrees with dims", entries: [][2]string{{"location", "c.bin"}, {"length", "4"}}, setup: std, want: "disagrees with dims"},
		{name: "offset not a number", entries: [][2]string{{"location", "c.bin"}, {"offset", "abc"}}, setup: std, want: "not a non-negative integer"},
		{name: "negative offset", entries: [][2]string{{"location", "c.bin"}, {"offset", "-8"}}, setup: std, want: "not a non-negative integer"},
		{name: "negative length", entries: [][2]string{{"location", "c.bin"}, {"length", "-8"}}, setup: std, want: "not a non-negative integer"},
		{name: "dims too large", entries: [][2]string{{"location", "c.bin"}}, setup: std, dims: []int64{1 << 20, 1 << 20, 1 << 20}, want: "more than"},
		{name: "negative dims", entries: [][2]string{{"location", "c.bin"}}, setup: std, dims: []int64{-2}, want: "negative"},
		{name: "string tensor", entries: [][2]string{{"location", "c.bin"}}, setup: std, dtype: onnxpb.TensorProto_STRING, want: "STRING"},
		{name: "same bytes read twice", entries: [][2]string{{"location", "c.bin"}}, setup: std, second: true, want: "overlapping"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.setup(t, dir)
			path := filepath.Join(dir, "model.onnx")
			m := &onnxpb.ModelProto{
				IrVersion:   7,
				OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 13}},
				Graph: &onnxpb.GraphProto{
					Input:  []*onnxpb.ValueInfoProto{floatInfo("X", 2)},
					Output: []*onnxpb.ValueInfoProto{floatInfo("Y", 2)},
					Node:   []*onnxpb.NodeProto{{OpType: "Add", Input: []string{"X", "C"}, Output: []string{"Y"}}},
				},
			}
			add := func(name string) {
				tp := &onnxpb.TensorProto{Name: name, Dims: []int64{2}, DataType: int32(Float), DataLocation: onnxpb.TensorProto_EXTERNAL}
				if c.dims != nil {
					tp.Dims = c.dims
				}
				if c.dtype != 0 {
					tp.DataType = int32(c.dtype)
				}
				for _, kv := range c.entries {
					tp.ExternalData = append(tp.ExternalData, &onnxpb.StringStringEntryProto{Key: kv[0], Value: kv[1]})
				}
				m.Graph.Initializer = append(m.Graph.Initializer, tp)
			}
			add("C")
			if c.second {
				add("D")
			}
			data, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := Load(path)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				vals, err := Float32s(got.Graph.Initializer[0])
				if err != nil || !equalFloats(vals, []float32{1.5, -2}) || External(got.Graph.Initializer[0]) {
					t.Fatalf("loaded C = %v, %v; want [1.5 -2] inline", vals, err)
				}
				return
			}
			tensor := `initializer "C"`
			if c.second {
				tensor = `initializer "D"`
			}
			assertOneLineError(t, err, path, tensor, c.want)
		})
	}
}

// assertOneLineError fails unless err is a one-line error that mentions
// every part.
func assertOneLineError(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", parts)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans several lines: %q", msg)
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("error %q does not mention %q", msg, p)
		}
	}
}
