package onnxio

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// mutateModel returns richModel's encoding after edit changed it.
func mutateModel(t *testing.T, edit func(m *onnxpb.ModelProto)) []byte {
	t.Helper()
	m := richModel()
	edit(m)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encodeMsg(t *testing.T, msg proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLoadUntrusted feeds Load broken and hostile files: each must give a
// one-line error naming the file and the part at fault, without panicking.
func TestLoadUntrusted(t *testing.T) {
	valid := mutateModel(t, func(*onnxpb.ModelProto) {})
	garbage := make([]byte, 4096)
	rand.New(rand.NewSource(1)).Read(garbage)
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x02\x00\x00\x00\x90\x91h6\x00\x00\x00\x00IEND\xaeB`\x82")
	constant := func(value *onnxpb.TensorProto) func(m *onnxpb.ModelProto) {
		return func(m *onnxpb.ModelProto) {
			m.Graph.Node = append([]*onnxpb.NodeProto{{Name: "k", OpType: "Constant", Output: []string{"K"},
				Attribute: []*onnxpb.AttributeProto{{Name: "value", Type: onnxpb.AttributeProto_TENSOR, T: value}}}}, m.Graph.Node...)
		}
	}
	w := func(m *onnxpb.ModelProto) *onnxpb.TensorProto { return m.Graph.Initializer[0] }
	cases := []struct {
		name  string
		data  []byte
		parts []string // besides the file name
	}{
		{"empty", nil, []string{"empty file"}},
		{"truncated", valid[:len(valid)/2], []string{"truncated or corrupt"}},
		{"truncated by one byte", valid[:len(valid)-1], []string{"truncated or corrupt"}},
		{"random bytes", garbage, []string{"not an ONNX model"}},
		{"png", png, []string{"not an ONNX model"}},
		{"text", []byte("ir_version: 7\ngraph { }\nthis is a text file, not a model\n"), []string{"not an ONNX model"}},
		{"a TensorProto", encodeMsg(t, NewFloat32("w", []int64{2}, []float32{1, 2})), []string{"not an ONNX model"}},
		{"a GraphProto", encodeMsg(t, richModel().Graph), []string{"not an ONNX model"}},
		{"an empty ModelProto", encodeMsg(t, &onnxpb.ModelProto{ProducerName: "x"}), []string{"no ir_version"}},
		{"no graph", encodeMsg(t, &onnxpb.ModelProto{IrVersion: 7}), []string{"no graph"}},
		{"dims overflow", mutateModel(t, func(m *onnxpb.ModelProto) { w(m).Dims = []int64{1 << 40, 1 << 40} }), []string{`initializer "W"`, "more than"}},
		{"dims overflow int64", mutateModel(t, func(m *onnxpb.ModelProto) { w(m).Dims = []int64{1 << 62, 1 << 62, 4} }), []string{`initializer "W"`, "more than"}},
		{"negative dim", mutateModel(t, func(m *onnxpb.ModelProto) { w(m).Dims = []int64{-4, -3} }), []string{`initializer "W"`, "negative"}},
		{"raw_data shorter than dims", mutateModel(t, func(m *onnxpb.ModelProto) { w(m).Dims = []int64{4, 4} }), []string{`initializer "W"`, "raw_data has 48 bytes", "need 64"}},
		{"raw_data not a whole element", mutateModel(t, func(m *onnxpb.ModelProto) { w(m).RawData = w(m).RawData[:47] }), []string{`initializer "W"`, "raw_data has 47 bytes"}},
		{"float_data count", mutateModel(t, func(m *onnxpb.ModelProto) {
			w(m).RawData, w(m).FloatData = nil, []float32{1, 2, 3}
		}), []string{`initializer "W"`, "float_data holds 3 values", "need 12"}},
		{"no data", mutateModel(t, func(m *onnxpb.ModelProto) { w(m).RawData = nil }), []string{`initializer "W"`, "has no data"}},
		{"data in the wrong field", mutateModel(t, func(m *onnxpb.ModelProto) {
			w(m).RawData, w(m).Int64Data = nil, make([]int64, 12)
		}), []string{`initializer "W"`, "has no data", "float_data"}},
		{"undefined data type", mutateModel(t, func(m *onnxpb.ModelProto) { w(m).DataType = 0 }), []string{`initializer "W"`, "UNDEFINED"}},
		{"unknown data type", mutateModel(t, func(m *onnxpb.ModelProto) { w(m).DataType = 99 }), []string{`initializer "W"`, "99"}},
		{"raw string tensor", mutateModel(t, func(m *onnxpb.ModelProto) { w(m).DataType = int32(onnxpb.TensorProto_STRING) }), []string{`initializer "W"`, "STRING"}},
		{"bad Constant value", mutateModel(t, constant(&onnxpb.TensorProto{Dims: []int64{3}, DataType: int32(Float), RawData: []byte{0, 0, 0, 0}})),
			[]string{`node 0 (Constant "k") attribute "value"`, "raw_data has 4 bytes"}},
		{"bad tensor in a subgraph", mutateModel(t, func(m *onnxpb.ModelProto) {
			sub := &onnxpb.GraphProto{Name: "then", Initializer: []*onnxpb.TensorProto{{Name: "T", Dims: []int64{2}, DataType: int32(Float), FloatData: []float32{1}}}}
			m.Graph.Node = append(m.Graph.Node, &onnxpb.NodeProto{OpType: "If", Input: []string{"Z"}, Output: []string{"O"},
				Attribute: []*onnxpb.AttributeProto{{Name: "then_branch", Type: onnxpb.AttributeProto_GRAPH, G: sub}}})
		}), []string{`node 2 (If) attribute "then_branch": initializer "T"`, "float_data holds 1 values"}},
		{"bad sparse initializer", mutateModel(t, func(m *onnxpb.ModelProto) {
			m.Graph.SparseInitializer = []*onnxpb.SparseTensorProto{{Dims: []int64{10},
				Values:  &onnxpb.TensorProto{Name: "S", Dims: []int64{2}, DataType: int32(Float), FloatData: []float32{1, 2, 3}},
				Indices: NewInt64("", []int64{2}, []int64{1, 5})}}
		}), []string{"sparse initializer 0 values", "float_data holds 3"}},
		{"undefined value", mutateModel(t, func(m *onnxpb.ModelProto) { m.Graph.Node[1].Input[0] = "nowhere" }),
			[]string{`node 1 (Relu "relu_0")`, `"nowhere"`, "undefined value"}},
		{"cycle", mutateModel(t, func(m *onnxpb.ModelProto) {
			m.Graph.Node[0].Input[0] = "Z" // MatMul reads Relu's output, Relu reads MatMul's
		}), []string{`node 0 (MatMul "matmul_0")`, `"Z"`, `node 1 (Relu "relu_0")`, "cycle: node 0 (MatMul \"matmul_0\") -> node 1 (Relu \"relu_0\")"}},
		{"self loop", mutateModel(t, func(m *onnxpb.ModelProto) { m.Graph.Node[1].Input[0] = "Z" }),
			[]string{`node 1 (Relu "relu_0")`, "its own output", "cycle"}},
		{"nodes out of order", mutateModel(t, func(m *onnxpb.ModelProto) {
			m.Graph.Node[0], m.Graph.Node[1] = m.Graph.Node[1], m.Graph.Node[0]
		}), []string{`node 0 (Relu "relu_0")`, `"Y"`, "not in topological order"}},
		{"output defined twice", mutateModel(t, func(m *onnxpb.ModelProto) { m.Graph.Node[1].Output[0] = "Y" }),
			[]string{`node 1 (Relu "relu_0")`, `"Y"`, `node 0 (MatMul "matmul_0")`, "only once"}},
		{"output redefines an input", mutateModel(t, func(m *onnxpb.ModelProto) { m.Graph.Node[1].Output[0] = "X" }),
			[]string{`node 1 (Relu "relu_0")`, `"X"`, "graph input 0", "only once"}},
		{"output redefines an initializer", mutateModel(t, func(m *onnxpb.ModelProto) { m.Graph.Node[1].Output[0] = "W" }),
			[]string{`node 1 (Relu "relu_0")`, `"W"`, `initializer "W"`}},
		{"unnamed graph input", mutateModel(t, func(m *onnxpb.ModelProto) {
			m.Graph.Input = append(m.Graph.Input, floatInfo("", 1))
		}), []string{"graph input 1 has no name"}},
		{"unnamed graph output", mutateModel(t, func(m *onnxpb.ModelProto) { m.Graph.Output[0].Name = "" }), []string{"graph output 0 has no name"}},
		{"output not produced", mutateModel(t, func(m *onnxpb.ModelProto) { m.Graph.Output[0].Name = "Q" }), []string{`graph output "Q"`, "not produced"}},
		{"duplicate input", mutateModel(t, func(m *onnxpb.ModelProto) {
			m.Graph.Input = append(m.Graph.Input, floatInfo("X", 2, 4))
		}), []string{`graph input 1`, `"X"`, "graph input 0"}},
		{"duplicate initializer", mutateModel(t, func(m *onnxpb.ModelProto) {
			m.Graph.Initializer = append(m.Graph.Initializer, proto.Clone(m.Graph.Initializer[0]).(*onnxpb.TensorProto))
		}), []string{`initializer "W" appears twice`}},
		{"control characters in names", mutateModel(t, func(m *onnxpb.ModelProto) {
			m.Graph.Node[1].OpType = "Re\nlu"
			m.Graph.Node[1].Name = "relu\n0"
			m.Graph.Node[1].Input[0] = "no\nwhere"
		}), []string{`node 1 ("Re\nlu" "relu\n0")`, `"no\nwhere"`, "undefined value"}},
		{"unnamed initializer", mutateModel(t, func(m *onnxpb.ModelProto) { w(m).Name = "" }), []string{"initializer 0 has no name"}},
	}
	dir := t.TempDir()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "case"+string(rune('a'+i%26))+string(rune('a'+i/26))+".onnx")
			if err := os.WriteFile(path, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			assertOneLineError(t, err, append([]string{path}, c.parts...)...)
		})
	}
	t.Run("invalid UTF-8 in a name", func(t *testing.T) {
		// Names are proto3 strings; a writer that puts other bytes there
		// must be refused, not crash the reader.
		b := mutateModel(t, func(m *onnxpb.ModelProto) { m.Graph.Node[0].Name = "node-#" })
		b = bytes.Replace(b, []byte("node-#"), []byte("node-\xff"), 1)
		path := filepath.Join(dir, "utf8.onnx")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		assertOneLineError(t, err, path, "UTF-8")
	})
	t.Run("folder", func(t *testing.T) {
		_, err := Load(dir)
		assertOneLineError(t, err, dir, "is a directory")
	})
	t.Run("missing file", func(t *testing.T) {
		p := filepath.Join(dir, "absent.onnx")
		_, err := Load(p)
		assertOneLineError(t, err, p, "no such file")
	})
}

// TestDecodeNoUnboundedAllocation checks that tensors whose dims promise far
// more data than they hold are refused before anything of the promised size
// is allocated.
func TestDecodeNoUnboundedAllocation(t *testing.T) {
	huge := []int64{1 << 16, 1 << 15} // 2^31 elements, within MaxElements
	cases := []*onnxpb.TensorProto{
		{Name: "f32", Dims: huge, DataType: int32(Float)},
		{Name: "f32raw", Dims: huge, DataType: int32(Float), RawData: make([]byte, 8)},
		{Name: "f16", Dims: huge, DataType: int32(Float16)},
		{Name: "f16raw", Dims: huge, DataType: int32(Float16), RawData: make([]byte, 8)},
		{Name: "bf16", Dims: huge, DataType: int32(onnxpb.TensorProto_BFLOAT16), Int32Data: []int32{1}},
		{Name: "f64", Dims: huge, DataType: int32(Double), DoubleData: []float64{1}},
		{Name: "i64", Dims: huge, DataType: int32(Int64)},
		{Name: "i64raw", Dims: huge, DataType: int32(Int64), RawData: make([]byte, 8)},
		{Name: "u64", Dims: huge, DataType: int32(onnxpb.TensorProto_UINT64), Uint64Data: []uint64{1}},
		{Name: "i32", Dims: huge, DataType: int32(Int32), Int32Data: []int32{1}},
		{Name: "u8", Dims: huge, DataType: int32(Uint8)},
	}
	for _, tp := range cases {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, errF := Float32s(tp)
		_, errI := Int64s(tp)
		errC := checkTensorData(tp)
		runtime.ReadMemStats(&after)
		if errF == nil || errI == nil || errC == nil {
			t.Errorf("%s: Float32s %v, Int64s %v, check %v; want three errors", tp.Name, errF, errI, errC)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Errorf("%s: refusing the tensor allocated %d bytes", tp.Name, grew)
		}
	}
}
