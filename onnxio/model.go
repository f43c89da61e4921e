package onnxio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/internal/atomicfile"
	"github.com/lprconv/lprconv/internal/inputfile"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// MaxFileBytes bounds the size of a model file that Load reads (2 GiB is the
// protobuf limit; external data is read separately).
const MaxFileBytes = 2<<30 - 1

// Load reads the ONNX model at path, loads any external tensor data from
// files next to it, and checks that the graph is well formed. The model and
// its data files must be regular files: a FIFO, device or socket is refused
// before it is opened.
func Load(path string) (*onnxpb.ModelProto, error) {
	m, _, err := LoadFiles(path)
	return m, err
}

// LoadFiles is Load that also returns the files the model was read from:
// the model file's real path (symbolic links resolved) first, then the real
// path of every external data file it read, sorted. Pass them to
// CheckOutput so that an output never replaces its own input.
func LoadFiles(path string) (*onnxpb.ModelProto, []string, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, nil, fmt.Errorf("load %s: is a directory, not an ONNX file", path)
	}
	data, err := inputfile.ReadFile(path, MaxFileBytes)
	if errors.Is(err, inputfile.ErrTooLarge) {
		return nil, nil, fmt.Errorf("load %s: file is over the 2 GiB protobuf limit", path)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", path, err)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", path, err)
	}
	if real, err = filepath.Abs(real); err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", path, err)
	}
	m, err := Decode(data)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", path, err)
	}
	extra, err := loadExternalData(m, filepath.Dir(path))
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", path, err)
	}
	if err := Check(m); err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", path, err)
	}
	return m, append([]string{real}, extra...), nil
}

// Decode parses a serialized ModelProto. It rejects data that is not an
// ONNX model; it does not load external data or check the graph.
func Decode(data []byte) (*onnxpb.ModelProto, error) {
	if len(data) == 0 {
		return nil, errors.New("empty file, not an ONNX model")
	}
	m := &onnxpb.ModelProto{}
	if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("not an ONNX model, or a truncated or corrupt one (%d bytes): %w", len(data), err)
	}
	if m.GetIrVersion() <= 0 {
		return nil, fmt.Errorf("not an ONNX model: no ir_version (%d bytes that parse as protobuf but lack the ModelProto fields)", len(data))
	}
	if m.GetGraph() == nil {
		return nil, fmt.Errorf("not an ONNX model: ir_version %d but no graph", m.GetIrVersion())
	}
	return m, nil
}

// Encode serializes the model deterministically.
func Encode(m *onnxpb.ModelProto) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// SaveOptions controls how Save writes a model.
type SaveOptions struct {
	// ExternalData writes large tensors to a data file next to the model.
	ExternalData bool
	// ExternalThreshold is the smallest tensor, in bytes, moved to the data
	// file (0 means DefaultExternalThreshold). INT64 and INT32 tensors under
	// DefaultExternalThreshold always stay inline: runtimes need shape-like
	// constants while building the graph.
	ExternalThreshold int
}

// Save writes the model to path atomically: it writes a temporary file in
// the destination folder and renames it into place. Tensors of at least
// opts.ExternalThreshold bytes go to one external data file next to the
// model, ExternalDataName(path) (also written atomically, before the model,
// with offsets aligned to 64 bytes, or 4096 for tensors of 64 KiB and
// more), when opts.ExternalData is set or when the model would exceed the
// 2 GiB protobuf limit. The model passed in is never modified.
func Save(path string, m *onnxpb.ModelProto, opts SaveOptions) error {
	return save(path, m, opts, MaxFileBytes)
}

// save is Save with the size, in bytes, over which a model is written with
// external data.
func save(path string, m *onnxpb.ModelProto, opts SaveOptions, limit int) error {
	if opts.ExternalData || proto.Size(m) > limit {
		return saveExternal(path, m, opts, limit, atomicfile.Write)
	}
	data, err := Encode(m)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := atomicfile.Write(path, data); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}
