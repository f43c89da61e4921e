package onnxio

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

const conformanceRoot = "/usr/share/libonnx-testdata/data"

// conformanceModels returns every model.onnx of Debian's libonnx-testdata.
func conformanceModels(t *testing.T) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(conformanceRoot, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == "model.onnx" {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil || len(paths) == 0 {
		if testutil.InCI() {
			t.Fatalf("no conformance models under %s (install Debian's libonnx-testdata): %v", conformanceRoot, err)
		}
		testutil.Skipf(t, "no conformance models under %s (install Debian's libonnx-testdata)", conformanceRoot)
	}
	sort.Strings(paths)
	return paths
}

// roundTrip loads path, saves it with opts into a temporary folder, loads
// the copy, and fails unless the two loaded models are equal.
func roundTrip(t *testing.T, path string, opts SaveOptions) {
	t.Helper()
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := Save(out, m, opts); err != nil {
		t.Fatal(err)
	}
	back, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	want := m
	if opts.ExternalData {
		// Tensors moved to the data file come back in raw_data, even those
		// that were stored in typed fields.
		want = rawForm(t, m, opts.ExternalThreshold)
	}
	if !proto.Equal(want, back) {
		t.Fatalf("%s: model changed in a Save+Load round trip", path)
	}
	if !opts.ExternalData {
		// Without external data the saved bytes are the deterministic
		// encoding of the loaded model, and encoding is stable.
		a, _ := Encode(m)
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("%s: saved bytes differ from Encode of the loaded model", path)
		}
	}
}

// rawForm returns a copy of m in which every tensor of at least threshold
// bytes holds its data in raw_data, as after a round trip through an
// external data file.
func rawForm(t *testing.T, m *onnxpb.ModelProto, threshold int) *onnxpb.ModelProto {
	t.Helper()
	if threshold <= 0 {
		threshold = DefaultExternalThreshold
	}
	c := proto.Clone(m).(*onnxpb.ModelProto)
	for _, lt := range allTensors(c) {
		raw, ok := rawBytes(lt.t)
		if !ok || len(raw) < threshold || keepInline(lt.t, len(raw)) {
			continue
		}
		lt.t.RawData = raw
		lt.t.FloatData, lt.t.DoubleData, lt.t.Int32Data, lt.t.Int64Data, lt.t.Uint64Data = nil, nil, nil, nil, nil
	}
	return c
}

func TestRoundTripConformance(t *testing.T) {
	paths := conformanceModels(t)
	for _, p := range paths {
		name := strings.TrimPrefix(filepath.Dir(p), conformanceRoot+"/")
		t.Run(name, func(t *testing.T) {
			roundTrip(t, p, SaveOptions{})
		})
	}
	t.Logf("%d conformance models round-tripped", len(paths))
}

// TestRoundTripConformanceExternal saves the conformance models that hold
// initializers with every tensor in an external data file.
func TestRoundTripConformanceExternal(t *testing.T) {
	n := 0
	for _, p := range conformanceModels(t) {
		m, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Graph.Initializer) == 0 {
			continue
		}
		n++
		name := strings.TrimPrefix(filepath.Dir(p), conformanceRoot+"/")
		t.Run(name, func(t *testing.T) {
			roundTrip(t, p, SaveOptions{ExternalData: true, ExternalThreshold: 1})
		})
	}
	if n == 0 {
		t.Fatal("no conformance model has initializers")
	}
}

func TestRoundTripFixtures(t *testing.T) {
	paths := testutil.Fixtures(t)
	if len(paths) == 0 {
		if testutil.InCI() {
			t.Fatal("no fixtures in testdata/models")
		}
		testutil.Skip(t, "no fixtures in testdata/models yet")
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			roundTrip(t, p, SaveOptions{})
			roundTrip(t, p, SaveOptions{ExternalData: true})
		})
	}
	// The saved copies must still be valid for ONNX and compute the same
	// outputs in ONNX Runtime.
	t.Run("downstream", func(t *testing.T) {
		for _, p := range paths {
			m, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			inline := filepath.Join(dir, "inline.onnx")
			external := filepath.Join(dir, "external.onnx")
			if err := Save(inline, m, SaveOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := Save(external, m, SaveOptions{ExternalData: true}); err != nil {
				t.Fatal(err)
			}
			testutil.CheckONNX(t, external)
			compareInORT(t, p, inline, external)
		}
	})
}

// TestRoundTripImageNet round-trips the ImageNet-shaped exports (tens of
// MB, hundreds of nodes) inline and with external data, and checks the
// external copies with onnx.checker and ONNX Runtime.
func TestRoundTripImageNet(t *testing.T) {
	for _, name := range []string{"mobilenetv1_1.0.onnx", "shufflenetv2_x1.0.onnx"} {
		t.Run(name, func(t *testing.T) {
			p := testutil.ImageNetModel(t, name)
			roundTrip(t, p, SaveOptions{})
			roundTrip(t, p, SaveOptions{ExternalData: true})
			m, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			external := filepath.Join(t.TempDir(), name)
			if err := Save(external, m, SaveOptions{ExternalData: true}); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(external)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() > 1<<20 {
				t.Errorf("model file with external data has %d bytes; want the weights in the data file", st.Size())
			}
			testutil.CheckONNX(t, external)
			compareInORT(t, p, external)
		})
	}
}

// compareInORT runs the models in ONNX Runtime on the same seeded input
// (batch 2, free dims 1) and fails unless every output is bit-identical.
func compareInORT(t *testing.T, ref string, others ...string) {
	t.Helper()
	testutil.RequireORT(t)
	ins, _, err := ortrun.InputOutputInfo(ref)
	if err != nil {
		t.Fatal(err)
	}
	inputs := map[string]ortrun.Tensor{}
	for _, in := range ins {
		shape := append([]int64(nil), in.Shape...)
		n := 1
		for i, d := range shape {
			if d < 0 {
				shape[i] = 1
				if i == 0 {
					shape[i] = 2
				}
			}
			n *= int(shape[i])
		}
		inputs[in.Name] = ortrun.Tensor{Shape: shape, Data: seq(n, 0.01)}
	}
	want, err := ortrun.Run(ref, inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range others {
		got, err := ortrun.Run(o, inputs, nil)
		if err != nil {
			t.Fatal(err)
		}
		for name, w := range want {
			if !equalFloats(got[name].Data, w.Data) || len(w.Data) == 0 {
				t.Errorf("%s: output %q differs from %s in ONNX Runtime", o, name, ref)
			}
		}
	}
}

// richModel returns a small valid model that sets every model-level field
// Save must keep.
func richModel() *onnxpb.ModelProto {
	w := NewFloat32("W", []int64{4, 3}, []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	w.DocString = "weights"
	return &onnxpb.ModelProto{
		IrVersion:       8,
		OpsetImport:     []*onnxpb.OperatorSetIdProto{{Domain: "", Version: 13}, {Domain: "com.example", Version: 2}},
		ProducerName:    "lprconv-test",
		ProducerVersion: "1.2.3",
		Domain:          "org.lprconv.test",
		ModelVersion:    42,
		DocString:       "a model with every top-level field set",
		MetadataProps:   []*onnxpb.StringStringEntryProto{{Key: "author", Value: "test"}, {Key: "license", Value: "none"}},
		Graph: &onnxpb.GraphProto{
			Name:        "g",
			DocString:   "graph doc",
			Initializer: []*onnxpb.TensorProto{w},
			Input:       []*onnxpb.ValueInfoProto{floatInfo("X", 2, 4)},
			Output:      []*onnxpb.ValueInfoProto{floatInfo("Z", 2, 3)},
			ValueInfo:   []*onnxpb.ValueInfoProto{floatInfo("Y", 2, 3)},
			Node: []*onnxpb.NodeProto{
				{Name: "matmul_0", OpType: "MatMul", Input: []string{"X", "W"}, Output: []string{"Y"}, DocString: "node doc"},
				{Name: "relu_0", OpType: "Relu", Input: []string{"Y"}, Output: []string{"Z"}},
			},
		},
	}
}

func floatInfo(name string, dims ...int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(Float), Shape: shape},
	}}}
}

func TestRoundTripKeepsModelFields(t *testing.T) {
	m := richModel()
	path := filepath.Join(t.TempDir(), "rich.onnx")
	if err := Save(path, m, SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		field string
		ok    bool
	}{
		{"ir_version", got.IrVersion == 8},
		{"opset_import", len(got.OpsetImport) == 2 && got.OpsetImport[1].Domain == "com.example" && got.OpsetImport[1].Version == 2 && got.OpsetImport[0].Version == 13},
		{"producer_name", got.ProducerName == "lprconv-test"},
		{"producer_version", got.ProducerVersion == "1.2.3"},
		{"domain", got.Domain == "org.lprconv.test"},
		{"model_version", got.ModelVersion == 42},
		{"doc_string", got.DocString == m.DocString},
		{"metadata_props", len(got.MetadataProps) == 2 && got.MetadataProps[0].Key == "author" && got.MetadataProps[1].Value == "none"},
		{"node names", got.Graph.Node[0].Name == "matmul_0" && got.Graph.Node[1].Name == "relu_0"},
		{"value names", got.Graph.Node[0].Output[0] == "Y" && got.Graph.ValueInfo[0].Name == "Y" && got.Graph.Input[0].Name == "X"},
		{"tensor doc_string", got.Graph.Initializer[0].DocString == "weights"},
		{"whole model", proto.Equal(m, got)},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s not preserved by Save+Load", c.field)
		}
	}
}

// appendUnknown appends fields that lprconv's schema does not define (a
// varint, a string and a nested message) to a serialized message.
func appendUnknown(b []byte, tag string) []byte {
	b = protowire.AppendTag(b, 9999, protowire.VarintType)
	b = protowire.AppendVarint(b, 123456789)
	b = protowire.AppendTag(b, 10001, protowire.BytesType)
	b = protowire.AppendString(b, "unknown-"+tag)
	var inner []byte
	inner = protowire.AppendTag(inner, 1, protowire.Fixed64Type)
	inner = protowire.AppendFixed64(inner, 0xdeadbeef)
	b = protowire.AppendTag(b, 10002, protowire.BytesType)
	return protowire.AppendBytes(b, inner)
}

func TestUnknownFieldsSurvive(t *testing.T) {
	m := richModel()
	// Give the graph, a node, a tensor and the model unknown fields by
	// re-parsing their serialized bytes with extra fields appended.
	withUnknown := func(msg proto.Message, tag string) {
		b, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		proto.Reset(msg)
		if err := proto.Unmarshal(appendUnknown(b, tag), msg); err != nil {
			t.Fatal(err)
		}
	}
	withUnknown(m.Graph.Node[0], "node")
	withUnknown(m.Graph.Initializer[0], "tensor")
	withUnknown(m.Graph.Input[0].Type, "type")
	withUnknown(m.OpsetImport[0], "opset")
	withUnknown(m.Graph, "graph")
	data, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	data = appendUnknown(data, "model")

	dir := t.TempDir()
	in := filepath.Join(dir, "in.onnx")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []SaveOptions{{}, {ExternalData: true, ExternalThreshold: 1}} {
		loaded, err := Load(in)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out.onnx")
		if err := Save(out, loaded, opts); err != nil {
			t.Fatal(err)
		}
		saved, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, tag := range []string{"model", "graph", "node", "tensor", "type", "opset"} {
			if !bytes.Contains(saved, []byte("unknown-"+tag)) {
				t.Errorf("external=%v: unknown field of the %s is gone after Save", opts.ExternalData, tag)
			}
		}
		back, err := Load(out)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(back, loaded) {
			t.Errorf("external=%v: model with unknown fields changed in a round trip", opts.ExternalData)
		}
		for _, msg := range []proto.Message{back, back.Graph, back.Graph.Node[0], back.Graph.Initializer[0], back.OpsetImport[0]} {
			if len(msg.ProtoReflect().GetUnknown()) == 0 {
				t.Errorf("external=%v: %T lost its unknown fields", opts.ExternalData, msg)
			}
		}
	}
}

func TestSetMetadata(t *testing.T) {
	cases := []struct {
		name  string
		start [][2]string
		key   string
		value string
		want  [][2]string
	}{
		{"append to empty", nil, "a", "1", [][2]string{{"a", "1"}}},
		{"append", [][2]string{{"a", "1"}}, "b", "2", [][2]string{{"a", "1"}, {"b", "2"}}},
		{"replace in place", [][2]string{{"a", "1"}, {"b", "2"}, {"c", "3"}}, "b", "x", [][2]string{{"a", "1"}, {"b", "x"}, {"c", "3"}}},
		{"drop duplicates", [][2]string{{"b", "0"}, {"a", "1"}, {"b", "2"}}, "b", "x", [][2]string{{"b", "x"}, {"a", "1"}}},
		{"empty value", [][2]string{{"a", "1"}}, "a", "", [][2]string{{"a", ""}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := &onnxpb.ModelProto{}
			for _, kv := range c.start {
				m.MetadataProps = append(m.MetadataProps, &onnxpb.StringStringEntryProto{Key: kv[0], Value: kv[1]})
			}
			SetMetadata(m, c.key, c.value)
			var got [][2]string
			for _, kv := range m.MetadataProps {
				got = append(got, [2]string{kv.Key, kv.Value})
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("got %v, want %v", got, c.want)
				}
			}
			if v, ok := Metadata(m, c.key); !ok || v != c.value {
				t.Errorf("Metadata(%q) = %q, %v", c.key, v, ok)
			}
		})
	}
}
