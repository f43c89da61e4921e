package torchexport

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"

	"github.com/lprconv/lprconv/internal/atomicfile"
	"github.com/lprconv/lprconv/onnxio"
)

// STensor is one tensor of a safetensors file. Floating-point data (F32,
// F64, F16, BF16) is held as float32 in F, integer data (I64, I32) in I.
type STensor struct {
	DType string
	Shape []int64
	F     []float32
	I     []int64
}

// Weights is the content of a safetensors file.
type Weights struct {
	Tensors  map[string]*STensor
	Metadata map[string]string
}

// Names returns the tensor names, sorted.
func (w *Weights) Names() []string {
	var out []string
	for n := range w.Tensors {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// maxHeader bounds the JSON header of a safetensors file (100 MB, as the
// reference implementation does).
const maxHeader = 100 << 20

// ReadSafetensors reads a safetensors file: an unsigned little-endian
// 64-bit header length n, n bytes of JSON mapping each tensor name to its
// dtype, shape and [begin, end) byte offsets into the data that follows
// (plus an optional "__metadata__" object of strings), then the tensors'
// little-endian bytes.
func ReadSafetensors(path string) (*Weights, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read weights: %w", err)
	}
	w, err := DecodeSafetensors(data)
	if err != nil {
		return nil, fmt.Errorf("read weights %s: %w", path, err)
	}
	return w, nil
}

// DecodeSafetensors parses the bytes of a safetensors file (see
// ReadSafetensors).
func DecodeSafetensors(data []byte) (*Weights, error) {
	if len(data) < 8 {
		return nil, errors.New("not a safetensors file: shorter than its 8-byte header length")
	}
	n := binary.LittleEndian.Uint64(data)
	if n > maxHeader || n > uint64(len(data)-8) {
		return nil, fmt.Errorf("not a safetensors file: header length %d for a file of %d bytes", n, len(data))
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+n], &header); err != nil {
		return nil, fmt.Errorf("safetensors header: %w", err)
	}
	body := data[8+n:]
	w := &Weights{Tensors: map[string]*STensor{}, Metadata: map[string]string{}}
	for name, raw := range header {
		if name == "__metadata__" {
			if err := json.Unmarshal(raw, &w.Metadata); err != nil {
				return nil, fmt.Errorf("safetensors __metadata__: %w", err)
			}
			continue
		}
		var e struct {
			DType   string   `json:"dtype"`
			Shape   []int64  `json:"shape"`
			Offsets []uint64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		t, err := decodeTensor(e.DType, e.Shape, e.Offsets, body)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		w.Tensors[name] = t
	}
	return w, nil
}

// safeDTypes are the safetensors element types read: bytes per value and
// the decoding of one little-endian value, to float32 (float types) or
// int64 (integer types).
var safeDTypes = map[string]struct {
	size    int
	toFloat func(b []byte) float32
	toInt   func(b []byte) int64
}{
	"F32":  {4, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }, nil},
	"F64":  {8, func(b []byte) float32 { return float32(math.Float64frombits(binary.LittleEndian.Uint64(b))) }, nil},
	"F16":  {2, func(b []byte) float32 { return onnxio.HalfToFloat32(binary.LittleEndian.Uint16(b)) }, nil},
	"BF16": {2, func(b []byte) float32 { return onnxio.BFloat16ToFloat32(binary.LittleEndian.Uint16(b)) }, nil},
	"I64":  {8, nil, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) }},
	"I32":  {4, nil, func(b []byte) int64 { return int64(int32(binary.LittleEndian.Uint32(b))) }},
}

func decodeTensor(dtype string, shape []int64, off []uint64, body []byte) (*STensor, error) {
	dt, ok := safeDTypes[dtype]
	size := dt.size
	if !ok {
		return nil, fmt.Errorf("dtype %q is not supported (want F32, F64, F16, BF16, I64 or I32)", dtype)
	}
	count, err := onnxio.ShapeSize(shape)
	if err != nil {
		return nil, fmt.Errorf("shape %v: %w", shape, err)
	}
	if len(off) != 2 || off[0] > off[1] || off[1] > uint64(len(body)) {
		return nil, fmt.Errorf("data_offsets %v outside the %d data bytes", off, len(body))
	}
	b := body[off[0]:off[1]]
	if uint64(len(b)) != uint64(count)*uint64(size) {
		return nil, fmt.Errorf("%d bytes for %d %s values of shape %v", len(b), count, dtype, shape)
	}
	t := &STensor{DType: dtype, Shape: shape}
	if dt.toFloat != nil {
		t.F = make([]float32, count)
		for i := range t.F {
			t.F[i] = dt.toFloat(b[size*i:])
		}
		return t, nil
	}
	t.I = make([]int64, count)
	for i := range t.I {
		t.I[i] = dt.toInt(b[size*i:])
	}
	return t, nil
}

// WriteSafetensors writes w to path atomically as a safetensors file of
// F32 (float) and I64 (integer) tensors in name order.
func WriteSafetensors(path string, w *Weights) error {
	header := map[string]any{}
	if len(w.Metadata) > 0 {
		header["__metadata__"] = w.Metadata
	}
	var off uint64
	names := w.Names()
	for _, n := range names {
		t := w.Tensors[n]
		dt, size := "F32", uint64(4*len(t.F))
		if t.F == nil {
			dt, size = "I64", uint64(8*len(t.I))
		}
		header[n] = map[string]any{"dtype": dt, "shape": t.Shape, "data_offsets": []uint64{off, off + size}}
		off += size
	}
	h, err := json.Marshal(header)
	if err != nil {
		return err
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	return atomicfile.WriteFunc(path, func(out io.Writer) error {
		var buf [8]byte
		binary.LittleEndian.PutUint64(buf[:], uint64(len(h)))
		if _, err := out.Write(append(buf[:], h...)); err != nil {
			return err
		}
		for _, n := range names {
			t := w.Tensors[n]
			var b []byte
			if t.F != nil {
				b = make([]byte, 4*len(t.F))
				for i, v := range t.F {
					binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
				}
			} else {
				b = make([]byte, 8*len(t.I))
				for i, v := range t.I {
					binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
				}
			}
			if _, err := out.Write(b); err != nil {
				return err
			}
		}
		return nil
	})
}
