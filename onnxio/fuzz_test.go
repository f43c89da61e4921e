package onnxio

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// fuzzSeeds returns small valid models that together use every part of
// the schema onnxio handles: typed and raw tensors, Constant attributes, a
// subgraph, a sparse initializer, external data references, metadata.
func fuzzSeeds() map[string]*onnxpb.ModelProto {
	seeds := map[string]*onnxpb.ModelProto{"rich": richModel()}

	small := richModel()
	small.Graph.Initializer[0] = &onnxpb.TensorProto{Name: "W", Dims: []int64{4, 3}, DataType: int32(Float), FloatData: seq(12, 0.5)}
	small.Graph.Node = append([]*onnxpb.NodeProto{{Name: "k", OpType: "Constant", Output: []string{"K"},
		Attribute: []*onnxpb.AttributeProto{{Name: "value", Type: onnxpb.AttributeProto_TENSOR, T: NewInt64("", []int64{2}, []int64{2, 3})}}}},
		small.Graph.Node...)
	small.Graph.SparseInitializer = []*onnxpb.SparseTensorProto{{Dims: []int64{10},
		Values:  &onnxpb.TensorProto{Name: "S", Dims: []int64{2}, DataType: int32(Float16), Int32Data: []int32{0x3c00, 0xc000}},
		Indices: NewInt64("", []int64{2}, []int64{1, 5})}}
	seeds["typed"] = small

	sub := richModel()
	then := &onnxpb.GraphProto{Name: "then", Output: []*onnxpb.ValueInfoProto{floatInfo("T", 2)},
		Initializer: []*onnxpb.TensorProto{{Name: "T", Dims: []int64{2}, DataType: int32(Double), DoubleData: []float64{1, 2}}}}
	sub.Graph.Node = append(sub.Graph.Node, &onnxpb.NodeProto{OpType: "If", Input: []string{"Z"}, Output: []string{"O"},
		Attribute: []*onnxpb.AttributeProto{{Name: "then_branch", Type: onnxpb.AttributeProto_GRAPH, G: then},
			{Name: "else_branch", Type: onnxpb.AttributeProto_GRAPH, G: proto.Clone(then).(*onnxpb.GraphProto)}}})
	seeds["subgraph"] = sub

	ext := richModel()
	w := ext.Graph.Initializer[0]
	w.RawData, w.DataLocation = nil, onnxpb.TensorProto_EXTERNAL
	w.ExternalData = []*onnxpb.StringStringEntryProto{{Key: "location", Value: "d.bin"}, {Key: "offset", Value: "16"}, {Key: "length", Value: "48"}}
	seeds["external"] = ext
	return seeds
}

// corruptions returns damaged variants of a valid encoding.
func corruptions(b []byte) map[string][]byte {
	out := map[string][]byte{
		"truncated": b[:len(b)/2],
		"tail":      b[len(b)/3:],
	}
	flip := append([]byte(nil), b...)
	for i := 7; i < len(flip); i += 53 {
		flip[i] ^= 0x5a
	}
	out["bitflip"] = flip
	// Dims of the first initializer (field 1, varint 4) set to a huge
	// value: 0x08 0x04 -> 0x08 0xff..0x01.
	if i := bytes.Index(b, []byte{0x08, 0x04, 0x08, 0x03}); i >= 0 {
		huge := append(append(append([]byte(nil), b[:i+1]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), b[i+2:]...)
		out["hugedims"] = huge
	}
	return out
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzDecode when
// ONNXIO_WRITE_FUZZ_SEEDS=1; otherwise it checks that the committed corpus
// is what the generator writes.
func TestWriteFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	want := map[string][]byte{}
	for name, m := range fuzzSeeds() {
		b, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		want["seed-"+name] = b
		for cname, cb := range corruptions(b) {
			want["seed-"+name+"-"+cname] = cb
		}
	}
	if os.Getenv("ONNXIO_WRITE_FUZZ_SEEDS") == "1" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range want {
			content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("fuzz seed %s: %v (regenerate with ONNXIO_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds ./onnxio/)", name, err)
		}
		if string(got) != "go test fuzz v1\n[]byte("+strconv.Quote(string(b))+")\n" {
			t.Errorf("fuzz seed %s is stale (regenerate with ONNXIO_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds ./onnxio/)", name)
		}
	}
}

// FuzzDecode feeds arbitrary bytes through everything onnxio does with an
// untrusted model: Decode, Check, tensor decoding, external data, Encode,
// and for models that pass Check, Save and Load. It fails on panics,
// multi-line errors and round trips that change the model.
func FuzzDecode(f *testing.F) {
	for _, m := range fuzzSeeds() {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	dataDir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, "d.bin"), bytes.Repeat([]byte{0, 0, 0x80, 0x3f}, 16), 0o644); err != nil {
		f.Fatal(err)
	}
	oneLine := func(t *testing.T, what string, err error) {
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s: multi-line error %q", what, err)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		oneLine(t, "Decode", err)
		if err != nil {
			if m != nil {
				t.Fatal("Decode returned a model and an error")
			}
			return
		}
		checkErr := Check(m)
		oneLine(t, "Check", checkErr)
		for _, lt := range allTensors(m) {
			_, err := Float32s(lt.t)
			oneLine(t, "Float32s", err)
			_, err = Int64s(lt.t)
			oneLine(t, "Int64s", err)
		}
		withData := proto.Clone(m).(*onnxpb.ModelProto)
		extErr := LoadExternalData(withData, dataDir)
		oneLine(t, "LoadExternalData", extErr)

		b, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode of a decoded model: %v", err)
		}
		back, err := Decode(b)
		if err != nil || !proto.Equal(back, m) {
			t.Fatalf("Encode+Decode changed the model (%v)", err)
		}
		if checkErr != nil || extErr != nil || Check(withData) != nil {
			return
		}
		dir := t.TempDir()
		path := filepath.Join(dir, "m.onnx")
		for _, opts := range []SaveOptions{{}, {ExternalData: true, ExternalThreshold: 1}} {
			if err := Save(path, withData, opts); err != nil {
				t.Fatalf("Save of a valid model (external=%v): %v", opts.ExternalData, err)
			}
			loaded, err := Load(path)
			if err != nil {
				t.Fatalf("Load of a saved model (external=%v): %v", opts.ExternalData, err)
			}
			want := withData
			if opts.ExternalData {
				want = rawForm(t, withData, 1)
			}
			if !proto.Equal(loaded, want) {
				t.Fatalf("Save+Load changed a valid model (external=%v)", opts.ExternalData)
			}
		}
	})
}
