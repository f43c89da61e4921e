package shapeinfer

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Concat returns the shape of the inputs joined along axis (all inputs
// have the same rank and agree off the axis; out[axis] is the sum) and the
// normalized axis.
func Concat(shapes [][]int64, axis int64) ([]int64, int, error) {
	if len(shapes) == 0 {
		return nil, 0, fmt.Errorf("no inputs")
	}
	r := len(shapes[0])
	ax, err := NormAxis(axis, r)
	if err != nil {
		return nil, 0, err
	}
	out := append([]int64{}, shapes[0]...)
	out[ax] = 0
	for i, s := range shapes {
		if len(s) != r {
			return nil, 0, fmt.Errorf("input %d has shape %v; input 0 has %v", i, s, shapes[0])
		}
		for d := range s {
			if d != ax && s[d] != out[d] {
				return nil, 0, fmt.Errorf("input %d has shape %v; input 0 has %v (they differ off axis %d)", i, s, shapes[0], ax)
			}
		}
		out[ax] += s[ax]
	}
	return out, ax, nil
}

// Split returns the sizes along the normalized axis of Split's outputs for
// an input of shape in. With sizes given they must be non-negative, one
// per output, and add up to the dim. Without them, num_outputs > 0 (opset
// 18) cuts chunks of ceil(d/num_outputs) with a smaller last one, and
// otherwise the dim must divide evenly into the outputs.
func Split(in []int64, axis int64, sizes []int64, outputs int, numOutputs int64) ([]int64, int, error) {
	ax, err := NormAxis(axis, len(in))
	if err != nil {
		return nil, 0, err
	}
	d := in[ax]
	if sizes == nil {
		switch {
		case numOutputs > 0:
			if numOutputs != int64(outputs) {
				return nil, 0, fmt.Errorf("num_outputs %d but %d outputs", numOutputs, outputs)
			}
			chunk := (d + numOutputs - 1) / numOutputs
			for i := int64(0); i < numOutputs; i++ {
				sizes = append(sizes, max(0, min(chunk, d-i*chunk)))
			}
		case outputs < 1 || d%int64(outputs) != 0:
			return nil, 0, fmt.Errorf("cannot split dim %d of %v into %d equal parts", d, in, outputs)
		default:
			for i := 0; i < outputs; i++ {
				sizes = append(sizes, d/int64(outputs))
			}
		}
	}
	if len(sizes) != outputs {
		return nil, 0, fmt.Errorf("split %v has %d entries for %d outputs", sizes, len(sizes), outputs)
	}
	sum := int64(0)
	for _, s := range sizes {
		if s < 0 {
			return nil, 0, fmt.Errorf("split %v has a negative size", sizes)
		}
		sum += s
	}
	if sum != d {
		return nil, 0, fmt.Errorf("split sizes %v do not add up to dim %d of %v", sizes, d, in)
	}
	return sizes, ax, nil
}

// Pad returns the shape after padding: out[axes[i]] += pads[i] +
// pads[i+k] for k = len(axes); nil axes means every axis.
func Pad(in, pads, axes []int64) ([]int64, error) {
	r := len(in)
	if axes == nil {
		for i := 0; i < r; i++ {
			axes = append(axes, int64(i))
		}
	}
	k := len(axes)
	if len(pads) != 2*k {
		return nil, fmt.Errorf("pads %v do not fit %d axes", pads, k)
	}
	norm, err := NormAxes(axes, r)
	if err != nil {
		return nil, err
	}
	out := append([]int64{}, in...)
	for i, ax := range norm {
		out[ax] += pads[i] + pads[i+k]
		if out[ax] < 0 {
			return nil, fmt.Errorf("pads %v make axis %d of %v negative", pads, ax, in)
		}
	}
	return out, nil
}

func (inf *inferer) concat(n *onnxpb.NodeProto) error {
	var ins []*Value
	var shapes [][]int64
	for i := range n.GetInput() {
		if v := inf.in(n, i); v != nil {
			ins, shapes = append(ins, v), append(shapes, v.Shape)
		}
	}
	out, _, err := Concat(shapes, onnxio.AttrInt(n, "axis", 0))
	if err != nil {
		return err
	}
	res := shapeOf(out, ins[0].DType)
	if len(out) == 1 {
		all := []int64{}
		for _, v := range ins {
			if !v.hasInts() {
				all = nil
				break
			}
			all = append(all, v.Ints...)
		}
		res.Ints = all
	}
	inf.set(n, 0, res)
	return nil
}

func (inf *inferer) split(n *onnxpb.NodeProto) error {
	x, err := inf.need(n, 0)
	if err != nil {
		return err
	}
	sizes, _, err := inf.axesInput(n, "split", 1)
	if err != nil {
		return err
	}
	sizes, axis, err := Split(x.Shape, onnxio.AttrInt(n, "axis", 0), sizes, len(n.GetOutput()), onnxio.AttrInt(n, "num_outputs", 0))
	if err != nil {
		return err
	}
	start := int64(0)
	for i, p := range sizes {
		s := append([]int64{}, x.Shape...)
		s[axis] = p
		v := shapeOf(s, x.DType)
		if x.hasInts() && len(x.Shape) == 1 {
			v.Ints = append([]int64{}, x.Ints[start:start+p]...)
		}
		inf.set(n, i, v)
		start += p
	}
	return nil
}

func (inf *inferer) pad(n *onnxpb.NodeProto) error {
	return inf.apply(n, false, func(x *Value) ([]int64, error) {
		pads, err := inf.attrOrConstInts(n, 11, "pads", 1)
		if err != nil {
			return nil, err
		}
		axes, _, err := inf.constInts(n, 3, "axes")
		if err != nil {
			return nil, err
		}
		return Pad(x.Shape, pads, axes)
	})
}
