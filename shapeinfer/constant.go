package shapeinfer

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// tensorValue turns a constant tensor into a Value, decoding small integer
// and float contents.
func tensorValue(t *onnxpb.TensorProto) (*Value, error) {
	v := &Value{Known: true, Shape: append([]int64{}, t.GetDims()...), DType: onnxio.DataType(t.GetDataType())}
	n, err := onnxio.NumElements(t)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	if onnxio.External(t) {
		return v, nil
	}
	if onnxio.IsFloat(t.GetDataType()) {
		if n <= maxKnownFloats {
			f, err := onnxio.Float32s(t)
			if err != nil {
				return nil, err
			}
			v.Floats = make([]float64, len(f))
			for i, x := range f {
				v.Floats[i] = float64(x)
			}
		}
		return v, nil
	}
	if n <= maxKnownInts {
		if ints, err := onnxio.Int64s(t); err == nil {
			v.Ints = ints
		}
	}
	return v, nil
}

// constant infers a Constant node from its one value attribute.
func (inf *inferer) constant(n *onnxpb.NodeProto) error {
	for _, a := range n.GetAttribute() {
		switch a.GetName() {
		case "value":
			if a.GetT() == nil {
				return fmt.Errorf("attribute value holds no tensor")
			}
			v, err := tensorValue(a.GetT())
			if err != nil {
				return err
			}
			inf.set(n, 0, v)
			return nil
		case "value_float":
			v := shapeOf([]int64{}, onnxio.Float)
			v.Floats = []float64{float64(a.GetF())}
			inf.set(n, 0, v)
			return nil
		case "value_floats":
			v := shapeOf([]int64{int64(len(a.GetFloats()))}, onnxio.Float)
			v.Floats = make([]float64, 0, len(a.GetFloats()))
			for _, f := range a.GetFloats() {
				v.Floats = append(v.Floats, float64(f))
			}
			inf.set(n, 0, v)
			return nil
		case "value_int":
			v := shapeOf([]int64{}, onnxio.Int64)
			v.Ints = []int64{a.GetI()}
			inf.set(n, 0, v)
			return nil
		case "value_ints":
			v := shapeOf([]int64{int64(len(a.GetInts()))}, onnxio.Int64)
			v.Ints = append([]int64{}, a.GetInts()...)
			inf.set(n, 0, v)
			return nil
		}
	}
	inf.warn(n, "unsupported Constant form; its output has an unknown shape")
	return nil
}

// constantOfShape infers ConstantOfShape: the shape is the value of input
// 0, the type that of the value attribute (float when absent).
func (inf *inferer) constantOfShape(n *onnxpb.NodeProto) error {
	s, _, err := inf.constInts(n, 0, "shape")
	if err != nil {
		return err
	}
	if s == nil {
		return fmt.Errorf("shape input is missing")
	}
	fill := &Value{Known: true, Shape: []int64{1}, DType: onnxio.Float, Floats: []float64{0}}
	if a := onnxio.Attr(n, "value"); a != nil && a.GetT() != nil {
		if fill, err = tensorValue(a.GetT()); err != nil {
			return err
		}
		if Size(fill.Shape) != 1 {
			return fmt.Errorf("attribute value has shape %v, want one element", fill.Shape)
		}
	}
	v := shapeOf(append([]int64{}, s...), fill.DType)
	count := v.Elements()
	switch {
	case count < 0:
		return fmt.Errorf("shape %v has a negative dim", s)
	case fill.Ints != nil && count <= maxKnownInts:
		v.Ints = make([]int64, count)
		for i := range v.Ints {
			v.Ints[i] = fill.Ints[0]
		}
	case fill.Floats != nil && count <= maxKnownFloats:
		v.Floats = make([]float64, count)
		for i := range v.Floats {
			v.Floats[i] = fill.Floats[0]
		}
	}
	inf.set(n, 0, v)
	return nil
}

// expand infers Expand: input 0 broadcast with the shape in input 1.
func (inf *inferer) expand(n *onnxpb.NodeProto) error {
	x := inf.in(n, 0)
	s, _, err := inf.constInts(n, 1, "shape")
	if err != nil {
		return err
	}
	if x == nil || s == nil {
		return fmt.Errorf("needs inputs input and shape")
	}
	out, err := Broadcast(x.Shape, s)
	if err != nil {
		return err
	}
	inf.set(n, 0, shapeOf(out, x.DType))
	return nil
}
