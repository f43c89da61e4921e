package engine

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// The engine keeps shapes as []int; package shapeinfer, whose rules the
// op builders apply, as ONNX does, as []int64. toInt64s and toInts convert.

func toInts(v []int64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

func toInt64s(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

// inputShape resolves the static shape of a graph input.
func inputShape(in *onnxpb.ValueInfoProto, override map[string][]int) ([]int, DType, error) {
	tt := in.GetType().GetTensorType()
	if tt == nil {
		return nil, 0, fmt.Errorf("graph input %q is not a tensor", in.Name)
	}
	dt, err := dtypeFromONNX(tt.GetElemType())
	if err != nil {
		return nil, 0, fmt.Errorf("graph input %q: %w", in.Name, err)
	}
	dims := tt.GetShape().GetDim()
	if s, ok := override[in.Name]; ok {
		if tt.GetShape() != nil && len(s) != len(dims) {
			return nil, 0, fmt.Errorf("graph input %q has rank %d; InputShapes gives %v", in.Name, len(dims), s)
		}
		for i, d := range s {
			if d < 0 {
				return nil, 0, fmt.Errorf("graph input %q: InputShapes dim %d is negative", in.Name, i)
			}
			if i < len(dims) {
				if _, ok := dims[i].GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); ok && dims[i].GetDimValue() != int64(d) {
					return nil, 0, fmt.Errorf("graph input %q: dim %d is fixed at %d; InputShapes gives %d", in.Name, i, dims[i].GetDimValue(), d)
				}
			}
		}
		if _, err := onnxio.ShapeSize(toInt64s(s)); err != nil {
			return nil, 0, fmt.Errorf("graph input %q: InputShapes %v: %w", in.Name, s, err)
		}
		return append([]int(nil), s...), dt, nil
	}
	if tt.GetShape() == nil {
		return nil, 0, fmt.Errorf("graph input %q has no shape; give it in Options.InputShapes", in.Name)
	}
	shape := make([]int, len(dims))
	for i, d := range dims {
		if _, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); ok && d.GetDimValue() >= 0 {
			shape[i] = int(d.GetDimValue())
			continue
		}
		if i == 0 {
			shape[i] = 1
			continue
		}
		return nil, 0, fmt.Errorf("graph input %q: dim %d (%q) is dynamic; give the shape in Options.InputShapes", in.Name, i, d.GetDimParam())
	}
	return shape, dt, nil
}
