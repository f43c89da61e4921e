package onnxio

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Element types that only appear in size checks.
const (
	float8First = onnxpb.TensorProto_FLOAT8E4M3FN   // 1-byte float formats: 17..20
	float8Last  = onnxpb.TensorProto_FLOAT8E5M2FNUZ //
	uint4       = onnxpb.TensorProto_UINT4          // 4-bit formats, two per byte: 21..23
	float4      = onnxpb.TensorProto_FLOAT4E2M1     //
)

// RawSize returns the number of bytes that n elements of type dt occupy in
// raw_data (and in external data files). It fails for STRING, UNDEFINED and
// types this schema does not know.
func RawSize(dt DataType, n int) (int64, error) {
	switch {
	case dt == Float || dt == Int32 || dt == onnxpb.TensorProto_UINT32:
		return 4 * int64(n), nil
	case dt == Double || dt == Int64 || dt == onnxpb.TensorProto_UINT64 || dt == onnxpb.TensorProto_COMPLEX64:
		return 8 * int64(n), nil
	case dt == onnxpb.TensorProto_COMPLEX128:
		return 16 * int64(n), nil
	case dt == Float16 || dt == onnxpb.TensorProto_BFLOAT16 || dt == onnxpb.TensorProto_INT16 || dt == onnxpb.TensorProto_UINT16:
		return 2 * int64(n), nil
	case dt == Bool || dt == Uint8 || dt == Int8 || (dt >= float8First && dt <= float8Last):
		return int64(n), nil
	case dt >= uint4 && dt <= float4:
		return (int64(n) + 1) / 2, nil
	case dt == onnxpb.TensorProto_STRING:
		return 0, fmt.Errorf("STRING tensors have no fixed-size binary form")
	case dt == onnxpb.TensorProto_UNDEFINED:
		return 0, fmt.Errorf("data type is UNDEFINED")
	}
	return 0, fmt.Errorf("data type %d is not one lprconv knows", int32(dt))
}

// checkTensorData verifies, without decoding any value, that the tensor's
// dims are valid and that its data (raw_data or the typed field its type
// uses) holds exactly as many elements as the dims say. Tensors whose data
// is still in an external file, and segments of split tensors, are checked
// for dims only.
func checkTensorData(t *onnxpb.TensorProto) error {
	n, err := NumElements(t)
	if err != nil {
		return err
	}
	dt := DataType(t.GetDataType())
	if dt == onnxpb.TensorProto_UNDEFINED {
		return fmt.Errorf("data type is UNDEFINED")
	}
	if _, ok := onnxpb.TensorProto_DataType_name[int32(dt)]; !ok {
		return fmt.Errorf("data type %d is not one lprconv knows", int32(dt))
	}
	if External(t) || t.Segment != nil {
		return nil
	}
	if raw := t.GetRawData(); len(raw) > 0 {
		size, err := RawSize(dt, n)
		if err != nil {
			return fmt.Errorf("raw_data: %w", err)
		}
		if int64(len(raw)) != size {
			return fmt.Errorf("raw_data has %d bytes, dims %v of %s need %d", len(raw), t.GetDims(), dt, size)
		}
		return nil
	}
	var got, want int
	field := ""
	want = n
	switch {
	case dt == Float:
		got, field = len(t.FloatData), "float_data"
	case dt == onnxpb.TensorProto_COMPLEX64:
		got, field, want = len(t.FloatData), "float_data", 2*n
	case dt == Double:
		got, field = len(t.DoubleData), "double_data"
	case dt == onnxpb.TensorProto_COMPLEX128:
		got, field, want = len(t.DoubleData), "double_data", 2*n
	case dt == Int64:
		got, field = len(t.Int64Data), "int64_data"
	case dt == onnxpb.TensorProto_UINT32 || dt == onnxpb.TensorProto_UINT64:
		got, field = len(t.Uint64Data), "uint64_data"
	case dt == onnxpb.TensorProto_STRING:
		got, field = len(t.StringData), "string_data"
	case dt >= uint4 && dt <= float4:
		// Packed two per entry; accept one per entry as well.
		got, field, want = len(t.Int32Data), "int32_data", (n+1)/2
		if got == n {
			want = n
		}
	default: // INT32, INT16, INT8, UINT16, UINT8, BOOL, FLOAT16, BFLOAT16, FLOAT8*
		got, field = len(t.Int32Data), "int32_data"
	}
	if got != want {
		if got == 0 {
			return fmt.Errorf("has no data: dims %v of %s need %d values in raw_data or %s", t.GetDims(), dt, want, field)
		}
		return fmt.Errorf("%s holds %d values, dims %v of %s need %d", field, got, t.GetDims(), dt, want)
	}
	return nil
}
