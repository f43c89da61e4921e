package shapeinfer

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// SliceBox is the strided box that a Slice selects: along every axis d of
// the input, Shape[d] elements starting at index Start[d] with step
// Step[d] (axes that are not sliced have Start 0, Step 1 and the full
// size).
type SliceBox struct {
	Shape, Start, Step []int64
}

// Slice applies the ONNX Slice rules to an input of shape in. axes nil
// means [0, len(starts)); steps nil means all 1. For every listed axis
// with size d, negative starts and ends have d added; then for a positive
// step the start and the end are clamped to [0, d], and for a negative
// step the start to [0, d-1] and the end to [-1, d-1]. The count is
// ceil((end-start)/step) when positive, else 0. A step of 0 and a repeated
// axis are errors.
func Slice(in, starts, ends, axes, steps []int64) (SliceBox, error) {
	r := len(in)
	if len(starts) != len(ends) {
		return SliceBox{}, fmt.Errorf("%d starts but %d ends", len(starts), len(ends))
	}
	if axes == nil {
		for i := range starts {
			axes = append(axes, int64(i))
		}
	}
	if steps == nil {
		steps = ones(len(starts))
	}
	if len(axes) != len(starts) || len(steps) != len(starts) {
		return SliceBox{}, fmt.Errorf("starts %v, ends %v, axes %v and steps %v differ in length", starts, ends, axes, steps)
	}
	norm, err := NormAxes(axes, r)
	if err != nil {
		return SliceBox{}, err
	}
	box := SliceBox{Shape: append([]int64{}, in...), Start: make([]int64, r), Step: ones(r)}
	for i, ax := range norm {
		d, st := in[ax], steps[i]
		if st == 0 {
			return SliceBox{}, fmt.Errorf("slice step is 0")
		}
		s, e := starts[i], ends[i]
		if s < 0 {
			s += d
		}
		if e < 0 {
			e += d
		}
		var count int64
		if st > 0 {
			s, e = clampRange(s, 0, d), clampRange(e, 0, d)
			if e > s {
				count = (e - s + st - 1) / st
			}
		} else {
			s, e = clampRange(s, 0, d-1), clampRange(e, -1, d-1)
			if s > e {
				count = (s - e - st - 1) / (-st)
			}
		}
		box.Shape[ax], box.Start[ax], box.Step[ax] = count, s, st
	}
	return box, nil
}

func clampRange(v, lo, hi int64) int64 {
	return max(lo, min(v, hi))
}

// Gather returns the shape of Gather along axis:
// data[:axis] ++ indices ++ data[axis+1:], and the normalized axis.
func Gather(data, indices []int64, axis int64) ([]int64, int, error) {
	ax, err := NormAxis(axis, len(data))
	if err != nil {
		return nil, 0, err
	}
	out := append([]int64{}, data[:ax]...)
	out = append(out, indices...)
	out = append(out, data[ax+1:]...)
	return out, ax, nil
}

// ShapeRange returns the dims [lo, hi) of a rank-r shape that the Shape
// operator returns for its start and end attributes: negative values have
// r added, then both are clamped to [0, r].
func ShapeRange(r, start, end int64) (lo, hi int64) {
	clamp := func(i int64) int64 {
		if i < 0 {
			i += r
		}
		return clampRange(i, 0, r)
	}
	lo, hi = clamp(start), clamp(end)
	return lo, max(lo, hi)
}

func (inf *inferer) slice(n *onnxpb.NodeProto) error {
	x, err := inf.need(n, 0)
	if err != nil {
		return err
	}
	var starts, ends, axes, steps []int64
	if inf.opset < 10 {
		starts, _ = onnxio.AttrInts(n, "starts")
		ends, _ = onnxio.AttrInts(n, "ends")
		axes, _ = onnxio.AttrInts(n, "axes")
	} else {
		for i, dst := range []*[]int64{&starts, &ends, &axes, &steps} {
			if *dst, _, err = inf.constInts(n, i+1, [...]string{"starts", "ends", "axes", "steps"}[i]); err != nil {
				return err
			}
		}
	}
	box, err := Slice(x.Shape, starts, ends, axes, steps)
	if err != nil {
		return err
	}
	v := shapeOf(box.Shape, x.DType)
	if len(x.Shape) == 1 && x.hasInts() {
		v.Ints = make([]int64, box.Shape[0])
		for i := range v.Ints {
			v.Ints[i] = x.Ints[box.Start[0]+int64(i)*box.Step[0]]
		}
	}
	inf.set(n, 0, v)
	return nil
}

func (inf *inferer) gather(n *onnxpb.NodeProto) error {
	x, err := inf.need(n, 0)
	if err != nil {
		return err
	}
	idx, err := inf.need(n, 1)
	if err != nil {
		return err
	}
	out, _, err := Gather(x.Shape, idx.Shape, onnxio.AttrInt(n, "axis", 0))
	if err != nil {
		return err
	}
	v := shapeOf(out, x.DType)
	if len(x.Shape) == 1 && idx.hasInts() && (x.hasInts() || x.hasFloats()) {
		d := x.Shape[0]
		for _, i := range idx.Ints {
			if i < 0 {
				i += d
			}
			if i < 0 || i >= d {
				return fmt.Errorf("index %d is out of range for dim %d", i, d)
			}
			if x.Ints != nil {
				v.Ints = append(v.Ints, x.Ints[i])
			} else {
				v.Floats = append(v.Floats, x.Floats[i])
			}
		}
		if x.Ints != nil && v.Ints == nil {
			v.Ints = []int64{}
		}
	}
	inf.set(n, 0, v)
	return nil
}

func (inf *inferer) shape(n *onnxpb.NodeProto) error {
	x, err := inf.need(n, 0)
	if err != nil {
		return err
	}
	r := int64(len(x.Shape))
	lo, hi := ShapeRange(r, onnxio.AttrInt(n, "start", 0), onnxio.AttrInt(n, "end", r))
	v := shapeOf([]int64{hi - lo}, onnxio.Int64)
	v.Ints = append([]int64{}, x.Shape[lo:hi]...)
	inf.set(n, 0, v)
	return nil
}

func (inf *inferer) size(n *onnxpb.NodeProto) error {
	x, err := inf.need(n, 0)
	if err != nil {
		return err
	}
	v := shapeOf([]int64{}, onnxio.Int64)
	v.Ints = []int64{x.Elements()}
	inf.set(n, 0, v)
	return nil
}
