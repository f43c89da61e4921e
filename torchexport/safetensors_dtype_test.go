package torchexport

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"testing"
)

// TestDecodeDTypes decodes one tensor of each supported element type from
// hand-built safetensors bytes whose values are exact in every type.
func TestDecodeDTypes(t *testing.T) {
	le := binary.LittleEndian
	for _, tc := range []struct {
		dtype string
		raw   []byte // two values, little-endian
		f     []float32
		i     []int64
	}{
		{"F32", le.AppendUint32(le.AppendUint32(nil, math.Float32bits(1.5)), math.Float32bits(-3)), []float32{1.5, -3}, nil},
		{"F64", le.AppendUint64(le.AppendUint64(nil, math.Float64bits(-2.25)), math.Float64bits(1e-3)), []float32{-2.25, float32(1e-3)}, nil},
		// IEEE half: 0x3c00 = 1, 0xc500 = -5
		{"F16", le.AppendUint16(le.AppendUint16(nil, 0x3c00), 0xc500), []float32{1, -5}, nil},
		// bfloat16 is the top half of a float32: 0x3fc0 = 1.5, 0xc120 = -10
		{"BF16", le.AppendUint16(le.AppendUint16(nil, 0x3fc0), 0xc120), []float32{1.5, -10}, nil},
		{"I64", le.AppendUint64(le.AppendUint64(nil, uint64(1<<40)), 0xffffffffffffffff), nil, []int64{1 << 40, -1}},
		{"I32", le.AppendUint32(le.AppendUint32(nil, 7), 0xfffffffd), nil, []int64{7, -3}},
	} {
		t.Run(tc.dtype, func(t *testing.T) {
			header := fmt.Sprintf(`{"x":{"dtype":%q,"shape":[2],"data_offsets":[0,%d]}}`, tc.dtype, len(tc.raw))
			data := append(le.AppendUint64(nil, uint64(len(header))), header...)
			w, err := DecodeSafetensors(append(data, tc.raw...))
			if err != nil {
				t.Fatal(err)
			}
			x := w.Tensors["x"]
			if x == nil || x.DType != tc.dtype || !slices.Equal(x.Shape, []int64{2}) || !slices.Equal(x.F, tc.f) || !slices.Equal(x.I, tc.i) {
				t.Fatalf("decoded %+v, want F %v I %v", x, tc.f, tc.i)
			}
		})
	}
}
