package shapeinfer

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// sliceModel is a one-node opset-13 model y = Slice(x, starts, ends,
// axes=[0], steps) over a 1-D float input of length d.
func sliceModel(d, start, end, step int64) *onnxpb.ModelProto {
	info := func(name string, dims ...int64) *onnxpb.ValueInfoProto {
		sh := &onnxpb.TensorShapeProto{}
		for _, v := range dims {
			sh.Dim = append(sh.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: v}})
		}
		if dims == nil {
			sh = nil
		}
		return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxio.Float), Shape: sh}}}}
	}
	g := &onnxpb.GraphProto{
		Name: "slice",
		Node: []*onnxpb.NodeProto{{OpType: "Slice", Input: []string{"x", "s", "e", "a", "st"}, Output: []string{"y"}}},
		Initializer: []*onnxpb.TensorProto{
			onnxio.NewInt64("s", []int64{1}, []int64{start}), onnxio.NewInt64("e", []int64{1}, []int64{end}),
			onnxio.NewInt64("a", []int64{1}, []int64{0}), onnxio.NewInt64("st", []int64{1}, []int64{step}),
		},
		Input:  []*onnxpb.ValueInfoProto{info("x", d)},
		Output: []*onnxpb.ValueInfoProto{info("y")},
	}
	return &onnxpb.ModelProto{IrVersion: 8, ProducerName: "lprconv-test", Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 13}}}
}

// TestSliceMatchesONNXRuntime checks Slice's clamping against ONNX
// Runtime, the cases where the two copies it replaces disagreed (a
// negative step with a start below -d: the ONNX specification clamps the
// start to [0, d-1], so one element is selected, where Python's slicing
// would select none) and the other corners of the rule.
func TestSliceMatchesONNXRuntime(t *testing.T) {
	testutil.RequireORT(t)
	const d = 5
	x := make([]float32, d)
	for i := range x {
		x[i] = float32(10 + i)
	}
	dir := t.TempDir()
	for _, c := range [][3]int64{
		{-100, -100, -1}, {-100, 0, -1}, {-6, -7, -1}, {100, -100, -1}, {4, -1, -1}, {4, -100, -2},
		{3, 0, -1}, {0, 0, -1}, {-1, -6, -2}, {0, 100, 1}, {-100, 100, 2}, {3, 1, 1}, {-2, 100, 1},
		{100, 100, 1}, {1, 4, 3}, {math32Max, 2, -1},
	} {
		t.Run(fmt.Sprintf("start=%d,end=%d,step=%d", c[0], c[1], c[2]), func(t *testing.T) {
			box, err := Slice([]int64{d}, []int64{c[0]}, []int64{c[1]}, []int64{0}, []int64{c[2]})
			if err != nil {
				t.Fatal(err)
			}
			data, err := onnxio.Encode(sliceModel(d, c[0], c[1], c[2]))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, fmt.Sprintf("slice_%d_%d_%d.onnx", c[0], c[1], c[2]))
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := ortrun.Run(path, map[string]ortrun.Tensor{"x": {Shape: []int64{d}, Data: x}}, []string{"y"})
			if err != nil {
				t.Fatal(err)
			}
			want := out["y"]
			t.Logf("ONNX Runtime: shape %v, values %v", want.Shape, want.Data)
			if !slices.Equal(box.Shape, want.Shape) {
				t.Fatalf("shape %v, ONNX Runtime gives %v", box.Shape, want.Shape)
			}
			for i, w := range want.Data {
				if g := x[box.Start[0]+int64(i)*box.Step[0]]; g != w {
					t.Fatalf("element %d = %g, ONNX Runtime gives %g", i, g, w)
				}
			}
		})
	}
}

// math32Max is INT32_MAX, which exporters pass for "to the end".
const math32Max = 1<<31 - 1
