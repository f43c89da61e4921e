package onnxio

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// DataType aliases the ONNX tensor element type enumeration.
type DataType = onnxpb.TensorProto_DataType

// Element types used across lprconv.
const (
	Float   = onnxpb.TensorProto_FLOAT
	Float16 = onnxpb.TensorProto_FLOAT16
	Double  = onnxpb.TensorProto_DOUBLE
	Int32   = onnxpb.TensorProto_INT32
	Int64   = onnxpb.TensorProto_INT64
	Bool    = onnxpb.TensorProto_BOOL
	Uint8   = onnxpb.TensorProto_UINT8
	Int8    = onnxpb.TensorProto_INT8
)

// MaxElements bounds the element count of any single tensor that lprconv
// decodes (4 G elements, 16 GiB of float32), so that a forged header cannot
// make it allocate without bound.
const MaxElements = 1 << 32

// NumElements returns the product of the tensor's dims, or an error when a
// dim is negative or the product overflows MaxElements.
func NumElements(t *onnxpb.TensorProto) (int, error) {
	return ShapeSize(t.GetDims())
}

// ShapeSize returns the product of dims, or an error when a dim is negative
// or the product exceeds MaxElements.
func ShapeSize(dims []int64) (int, error) {
	n := int64(1)
	for i, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("dim %d is negative (%d)", i, d)
		}
		if d != 0 && n > MaxElements/d {
			return 0, fmt.Errorf("dims %v hold more than %d elements", dims, int64(MaxElements))
		}
		n *= d
	}
	return int(n), nil
}

// elemSize is the byte size of one element in raw_data for the fixed-size
// types lprconv decodes.
func elemSize(dt DataType) int {
	switch dt {
	case Float, Int32:
		return 4
	case Double, Int64, onnxpb.TensorProto_UINT64:
		return 8
	case Float16, onnxpb.TensorProto_BFLOAT16, onnxpb.TensorProto_INT16, onnxpb.TensorProto_UINT16:
		return 2
	case Bool, Uint8, Int8:
		return 1
	}
	return 0
}

func tensorLabel(t *onnxpb.TensorProto) string {
	if t.GetName() != "" {
		return fmt.Sprintf("tensor %q", t.GetName())
	}
	return "unnamed tensor"
}

// checkRaw verifies that raw_data holds exactly n elements of type dt.
func checkRaw(t *onnxpb.TensorProto, n int) error {
	sz := elemSize(DataType(t.GetDataType()))
	if len(t.RawData) != n*sz {
		return fmt.Errorf("%s: raw_data has %d bytes, dims %v need %d", tensorLabel(t), len(t.RawData), t.GetDims(), n*sz)
	}
	return nil
}

func checkCount(t *onnxpb.TensorProto, got, want int) error {
	if got != want {
		return fmt.Errorf("%s: holds %d values, dims %v need %d", tensorLabel(t), got, t.GetDims(), want)
	}
	return nil
}

// External reports whether the tensor's data lives in an external file that
// has not been loaded.
func External(t *onnxpb.TensorProto) bool {
	return t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL
}

// decodable returns the element count and data type of a tensor whose data
// is in memory, or an error naming the tensor if its data is external and
// not loaded or its dims are invalid.
func decodable(t *onnxpb.TensorProto) (int, DataType, error) {
	if External(t) {
		return 0, 0, fmt.Errorf("%s: external data not loaded", tensorLabel(t))
	}
	n, err := NumElements(t)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", tensorLabel(t), err)
	}
	return n, DataType(t.GetDataType()), nil
}

// Float32s decodes a FLOAT, FLOAT16, BFLOAT16 or DOUBLE tensor (raw_data or
// typed fields) into a new []float32.
func Float32s(t *onnxpb.TensorProto) ([]float32, error) {
	n, dt, err := decodable(t)
	if err != nil {
		return nil, err
	}
	raw := t.GetRawData()
	hasRaw := len(raw) > 0
	switch dt {
	case Float:
		if hasRaw {
			if err := checkRaw(t, n); err != nil {
				return nil, err
			}
			out := make([]float32, n)
			for i := range out {
				out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
			return out, nil
		}
		if err := checkCount(t, len(t.FloatData), n); err != nil {
			return nil, err
		}
		return append([]float32(nil), t.FloatData...), nil
	case Double:
		if hasRaw {
			if err := checkRaw(t, n); err != nil {
				return nil, err
			}
			out := make([]float32, n)
			for i := range out {
				out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
			}
			return out, nil
		}
		if err := checkCount(t, len(t.DoubleData), n); err != nil {
			return nil, err
		}
		out := make([]float32, n)
		for i, v := range t.DoubleData {
			out[i] = float32(v)
		}
		return out, nil
	case Float16, onnxpb.TensorProto_BFLOAT16:
		conv := HalfToFloat32
		if dt == onnxpb.TensorProto_BFLOAT16 {
			conv = BFloat16ToFloat32
		}
		if hasRaw {
			if err := checkRaw(t, n); err != nil {
				return nil, err
			}
			out := make([]float32, n)
			for i := range out {
				out[i] = conv(binary.LittleEndian.Uint16(raw[2*i:]))
			}
			return out, nil
		}
		// 16-bit floats are stored one per int32_data entry.
		if err := checkCount(t, len(t.Int32Data), n); err != nil {
			return nil, err
		}
		out := make([]float32, n)
		for i, v := range t.Int32Data {
			out[i] = conv(uint16(v))
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: data type %s is not a floating-point type", tensorLabel(t), dt)
}

// Int64s decodes an INT64, INT32, INT16, INT8, UINT8, UINT16 or BOOL tensor
// into a new []int64.
func Int64s(t *onnxpb.TensorProto) ([]int64, error) {
	n, dt, err := decodable(t)
	if err != nil {
		return nil, err
	}
	raw := t.GetRawData()
	if len(raw) > 0 {
		if elemSize(dt) == 0 {
			return nil, fmt.Errorf("%s: data type %s is not an integer type", tensorLabel(t), dt)
		}
		if err := checkRaw(t, n); err != nil {
			return nil, err
		}
		out := make([]int64, n)
		for i := range out {
			switch dt {
			case Int64:
				out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
			case onnxpb.TensorProto_UINT64:
				out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
			case Int32:
				out[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
			case onnxpb.TensorProto_INT16:
				out[i] = int64(int16(binary.LittleEndian.Uint16(raw[2*i:])))
			case onnxpb.TensorProto_UINT16:
				out[i] = int64(binary.LittleEndian.Uint16(raw[2*i:]))
			case Int8:
				out[i] = int64(int8(raw[i]))
			case Uint8, Bool:
				out[i] = int64(raw[i])
			default:
				return nil, fmt.Errorf("%s: data type %s is not an integer type", tensorLabel(t), dt)
			}
		}
		return out, nil
	}
	var out []int64
	switch dt {
	case Int64:
		if err := checkCount(t, len(t.Int64Data), n); err != nil {
			return nil, err
		}
		out = make([]int64, n)
		copy(out, t.Int64Data)
	case onnxpb.TensorProto_UINT64:
		if err := checkCount(t, len(t.Uint64Data), n); err != nil {
			return nil, err
		}
		out = make([]int64, n)
		for i, v := range t.Uint64Data {
			out[i] = int64(v)
		}
	case Int32, onnxpb.TensorProto_INT16, onnxpb.TensorProto_UINT16, Int8, Uint8, Bool:
		if err := checkCount(t, len(t.Int32Data), n); err != nil {
			return nil, err
		}
		out = make([]int64, n)
		for i, v := range t.Int32Data {
			out[i] = int64(v)
		}
	default:
		return nil, fmt.Errorf("%s: data type %s is not an integer type", tensorLabel(t), dt)
	}
	return out, nil
}

// NewFloat32 returns a FLOAT tensor holding data in raw_data.
func NewFloat32(name string, dims []int64, data []float32) *onnxpb.TensorProto {
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return &onnxpb.TensorProto{Name: name, Dims: append([]int64(nil), dims...), DataType: int32(Float), RawData: raw}
}

// NewInt64 returns an INT64 tensor holding data in raw_data.
func NewInt64(name string, dims []int64, data []int64) *onnxpb.TensorProto {
	raw := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	return &onnxpb.TensorProto{Name: name, Dims: append([]int64(nil), dims...), DataType: int32(Int64), RawData: raw}
}

// HalfToFloat32 converts an IEEE 754 binary16 value to float32.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: normalize
		e := uint32(127 - 15 + 1)
		for frac&0x400 == 0 {
			frac <<= 1
			e--
		}
		frac &= 0x3ff
		return math.Float32frombits(sign | e<<23 | frac<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
}

// BFloat16ToFloat32 converts a bfloat16 value to float32.
func BFloat16ToFloat32(b uint16) float32 {
	return math.Float32frombits(uint32(b) << 16)
}
