package engine

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// DType is the element type of a Tensor. Float32 values live in Tensor.F;
// every integer and boolean type lives in Tensor.I as int64.
type DType int

// Element types the engine executes.
const (
	Float32 DType = iota
	Int64
	Int32
	Bool
)

// String returns the ONNX name of the type.
func (d DType) String() string {
	switch d {
	case Float32:
		return "float"
	case Int64:
		return "int64"
	case Int32:
		return "int32"
	case Bool:
		return "bool"
	}
	return fmt.Sprintf("DType(%d)", int(d))
}

// IsFloat reports whether the type's values are held in Tensor.F.
func (d DType) IsFloat() bool { return d == Float32 }

// dtypeFromONNX maps an ONNX element type to a DType.
func dtypeFromONNX(t int32) (DType, error) {
	switch onnxpb.TensorProto_DataType(t) {
	case onnxpb.TensorProto_FLOAT:
		return Float32, nil
	case onnxpb.TensorProto_INT64:
		return Int64, nil
	case onnxpb.TensorProto_INT32:
		return Int32, nil
	case onnxpb.TensorProto_BOOL:
		return Bool, nil
	}
	return 0, fmt.Errorf("element type %s is not supported (float, int64, int32 and bool are)", onnxpb.TensorProto_DataType(t))
}

// ONNXType returns the ONNX element type code of d.
func (d DType) ONNXType() onnxpb.TensorProto_DataType {
	switch d {
	case Int64:
		return onnxpb.TensorProto_INT64
	case Int32:
		return onnxpb.TensorProto_INT32
	case Bool:
		return onnxpb.TensorProto_BOOL
	}
	return onnxpb.TensorProto_FLOAT
}

// Tensor is a dense row-major array. Exactly one of F (Float32) and I
// (integer and boolean types) holds the Size() values.
type Tensor struct {
	Shape []int
	DType DType
	F     []float32
	I     []int64
}

// NewTensor returns a zero Float32 tensor of the given shape.
func NewTensor(shape ...int) *Tensor {
	return &Tensor{Shape: append([]int(nil), shape...), F: make([]float32, sizeOf(shape))}
}

// NewTensorF wraps data (not copied) as a Float32 tensor of the given shape.
func NewTensorF(data []float32, shape ...int) *Tensor {
	return &Tensor{Shape: append([]int(nil), shape...), F: data}
}

// NewTensorI wraps data (not copied) as an Int64 tensor of the given shape.
func NewTensorI(data []int64, shape ...int) *Tensor {
	return &Tensor{Shape: append([]int(nil), shape...), DType: Int64, I: data}
}

// Size returns the number of elements, the product of Shape.
func (t *Tensor) Size() int { return sizeOf(t.Shape) }

// Clone returns a deep copy of t.
func (t *Tensor) Clone() *Tensor {
	c := &Tensor{Shape: append([]int(nil), t.Shape...), DType: t.DType}
	if t.F != nil {
		c.F = append([]float32(nil), t.F...)
	}
	if t.I != nil {
		c.I = append([]int64(nil), t.I...)
	}
	return c
}

// check verifies that the tensor's storage matches its shape and type.
func (t *Tensor) check() error {
	n := t.Size()
	if t.DType.IsFloat() {
		if len(t.F) != n {
			return fmt.Errorf("shape %v needs %d float values, have %d", t.Shape, n, len(t.F))
		}
	} else if len(t.I) != n {
		return fmt.Errorf("shape %v needs %d %s values, have %d", t.Shape, n, t.DType, len(t.I))
	}
	return nil
}

// TensorFromProto decodes an ONNX TensorProto of a supported element type.
func TensorFromProto(tp *onnxpb.TensorProto) (*Tensor, error) {
	dt, err := dtypeFromONNX(tp.GetDataType())
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", tp.GetName(), err)
	}
	shape := make([]int, len(tp.GetDims()))
	for i, d := range tp.GetDims() {
		shape[i] = int(d)
	}
	if _, err := onnxio.ShapeSize(tp.GetDims()); err != nil {
		return nil, fmt.Errorf("tensor %q: %w", tp.GetName(), err)
	}
	t := &Tensor{Shape: shape, DType: dt}
	if dt.IsFloat() {
		t.F, err = onnxio.Float32s(tp)
	} else {
		t.I, err = onnxio.Int64s(tp)
	}
	if err != nil {
		return nil, err
	}
	if t.F == nil && t.I == nil {
		// empty tensors decode to nil; keep a non-nil slice for checks
		if dt.IsFloat() {
			t.F = []float32{}
		} else {
			t.I = []int64{}
		}
	}
	return t, nil
}

// ToProto encodes t as an ONNX TensorProto named name.
func (t *Tensor) ToProto(name string) *onnxpb.TensorProto {
	dims := make([]int64, len(t.Shape))
	for i, d := range t.Shape {
		dims[i] = int64(d)
	}
	if t.DType.IsFloat() {
		return onnxio.NewFloat32(name, dims, t.F)
	}
	p := onnxio.NewInt64(name, dims, t.I)
	if t.DType != Int64 {
		p.RawData = nil
		p.DataType = int32(t.DType.ONNXType())
		p.Int32Data = make([]int32, len(t.I))
		for i, v := range t.I {
			p.Int32Data[i] = int32(v)
		}
	}
	return p
}

func sizeOf(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func stridesOf(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}

// collapseDims simplifies a strided walk over shape: it drops dims of size
// 1 and merges dim i into dim i+1 wherever every stride array is
// contiguous across them (s[i] == s[i+1]*shape[i+1]). The walk visits the
// same elements in the same order. At least one dim is returned.
func collapseDims(shape []int, strides ...[]int) ([]int, [][]int) {
	var outShape []int
	outStrides := make([][]int, len(strides))
	for i, d := range shape {
		if d == 1 {
			continue
		}
		if k := len(outShape) - 1; k >= 0 {
			merge := true
			for j, st := range strides {
				if outStrides[j][k] != st[i]*d {
					merge = false
				}
			}
			if merge {
				outShape[k] *= d
				for j, st := range strides {
					outStrides[j][k] = st[i]
				}
				continue
			}
		}
		outShape = append(outShape, d)
		for j, st := range strides {
			outStrides[j] = append(outStrides[j], st[i])
		}
	}
	if len(outShape) == 0 {
		outShape = []int{1}
		for j := range outStrides {
			outStrides[j] = []int{0}
		}
	}
	return outShape, outStrides
}
