package shapeinfer

import (
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Reduce returns the output shape of a Reduce* operator over axes of an
// input of shape in, and which input axes are reduced. No axes (nil or
// empty) reduce every axis, unless noopWithEmptyAxes, when nothing is
// reduced. A reduced axis stays as a 1 with keepDims and is dropped
// otherwise.
func Reduce(in, axes []int64, keepDims, noopWithEmptyAxes bool) ([]int64, []bool, error) {
	reduced := make([]bool, len(in))
	if len(axes) == 0 {
		if noopWithEmptyAxes {
			return append([]int64{}, in...), reduced, nil
		}
		for i := range reduced {
			reduced[i] = true
		}
	}
	norm, err := NormAxes(axes, len(in))
	if err != nil {
		return nil, nil, err
	}
	for _, ax := range norm {
		reduced[ax] = true
	}
	out := []int64{}
	for i, d := range in {
		switch {
		case !reduced[i]:
			out = append(out, d)
		case keepDims:
			out = append(out, 1)
		}
	}
	return out, reduced, nil
}

func (inf *inferer) reduce(n *onnxpb.NodeProto) error {
	return inf.apply(n, false, func(x *Value) ([]int64, error) {
		axes, _, err := inf.axesInput(n, "axes", 1)
		if err != nil {
			return nil, err
		}
		out, _, err := Reduce(x.Shape, axes, onnxio.AttrInt(n, "keepdims", 1) != 0, onnxio.AttrInt(n, "noop_with_empty_axes", 0) != 0)
		return out, err
	})
}
