package onnxio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/internal/atomicfile"
	"github.com/lprconv/lprconv/internal/inputfile"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// DefaultExternalThreshold is the smallest tensor, in bytes, that Save moves
// to the external data file when SaveOptions.ExternalThreshold is zero.
const DefaultExternalThreshold = 1024

// Offsets in the external data file are aligned to pageAlign for tensors of
// at least pageAlignMin bytes (so that runtimes can map them) and to
// smallAlign otherwise.
const (
	pageAlign    = 4096
	pageAlignMin = 64 << 10
	smallAlign   = 64
)

// ExternalDataName returns the name of the data file that Save writes next
// to the model at path: the model's file name plus ".data".
func ExternalDataName(path string) string {
	return filepath.Base(path) + ".data"
}

// externalRef is a parsed external_data list.
type externalRef struct {
	location  string
	offset    int64
	length    int64
	hasLength bool
}

func parseExternal(t *onnxpb.TensorProto) (externalRef, error) {
	var r externalRef
	hasLocation := false
	for _, kv := range t.ExternalData {
		switch kv.GetKey() {
		case "location":
			r.location = kv.GetValue()
			hasLocation = true
		case "offset", "length":
			v, err := strconv.ParseInt(kv.GetValue(), 10, 64)
			if err != nil || v < 0 {
				return r, fmt.Errorf("%s %q is not a non-negative integer", kv.GetKey(), kv.GetValue())
			}
			if kv.GetKey() == "offset" {
				r.offset = v
			} else {
				r.length, r.hasLength = v, true
			}
		}
		// Other keys (checksum, basepath) do not change where the data is.
	}
	if !hasLocation || r.location == "" {
		return r, errors.New("external_data has no location entry")
	}
	return r, nil
}

// resolveLocation returns the real path of an external data file, refusing
// locations that are absolute, that climb out of the model's folder, or
// whose symlinks lead out of it.
func resolveLocation(dir, location string) (string, error) {
	loc := filepath.FromSlash(location)
	if filepath.IsAbs(loc) || filepath.IsAbs(location) {
		return "", fmt.Errorf("location %q is an absolute path; external data must lie in the model's folder", location)
	}
	if !filepath.IsLocal(loc) {
		return "", fmt.Errorf("location %q leaves the model's folder", location)
	}
	root, err := filepath.EvalSymlinks(dir)
	if err == nil {
		root, err = filepath.Abs(root)
	}
	if err != nil {
		return "", fmt.Errorf("model folder: %v", cause(err))
	}
	p := filepath.Join(dir, loc)
	real, err := filepath.EvalSymlinks(p)
	if err == nil {
		real, err = filepath.Abs(real)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("data file %q does not exist", p)
		}
		return "", fmt.Errorf("data file %q: %v", p, cause(err))
	}
	rel, err := filepath.Rel(root, real)
	if err != nil || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("location %q resolves through a symlink to %q, outside the model's folder", location, real)
	}
	return real, nil
}

// cause strips the path from a *fs.PathError, whose %s form would print a
// path taken from the model unquoted.
func cause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// externalFile is an open external data file.
type externalFile struct {
	f    *os.File
	path string
	size int64
}

// LoadExternalData reads the data of every tensor whose data_location is
// EXTERNAL from the file its external_data names, relative to dir (the
// model's folder), stores it in raw_data and marks the tensor as inline.
// It refuses locations outside dir, missing files, ranges outside the file,
// and lengths that disagree with the tensor's dims; the total loaded is
// bounded by the size of the files referenced.
func LoadExternalData(m *onnxpb.ModelProto, dir string) error {
	_, err := loadExternalData(m, dir)
	return err
}

// loadExternalData is LoadExternalData that also returns the real paths of
// the data files it read, sorted.
func loadExternalData(m *onnxpb.ModelProto, dir string) ([]string, error) {
	files := map[string]*externalFile{}
	defer func() {
		for _, ef := range files {
			ef.f.Close()
		}
	}()
	var budget, loaded int64
	for _, lt := range allTensors(m) {
		t := lt.t
		if !External(t) {
			continue
		}
		if err := loadExternal(t, dir, files, &budget, &loaded); err != nil {
			return nil, fmt.Errorf("%s: external data: %w", lt.where, err)
		}
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths, nil
}

func loadExternal(t *onnxpb.TensorProto, dir string, files map[string]*externalFile, budget, loaded *int64) error {
	ref, err := parseExternal(t)
	if err != nil {
		return err
	}
	n, err := NumElements(t)
	if err != nil {
		return err
	}
	want, err := RawSize(DataType(t.GetDataType()), n)
	if err != nil {
		return err
	}
	if ref.hasLength && ref.length != want {
		return fmt.Errorf("length %d disagrees with dims %v of %s (%d bytes)", ref.length, t.GetDims(), DataType(t.GetDataType()), want)
	}
	real, err := resolveLocation(dir, ref.location)
	if err != nil {
		return err
	}
	ef, ok := files[real]
	if !ok {
		// inputfile.Open refuses a FIFO or device before opening it:
		// opening a FIFO would block until a writer appears.
		f, err := inputfile.Open(real)
		if errors.Is(err, inputfile.ErrNotRegular) {
			return fmt.Errorf("data file %q: %w", real, inputfile.ErrNotRegular)
		}
		if err != nil {
			return fmt.Errorf("data file %q: %v", real, cause(err))
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("data file %q: %v", real, cause(err))
		}
		if !st.Mode().IsRegular() {
			f.Close()
			return fmt.Errorf("data file %q is not a regular file", real)
		}
		ef = &externalFile{f: f, path: real, size: st.Size()}
		files[real] = ef
		*budget += st.Size()
	}
	if ref.offset > ef.size || want > ef.size-ref.offset {
		return fmt.Errorf("offset %d + length %d lies outside data file %q (%d bytes)", ref.offset, want, ef.path, ef.size)
	}
	if *loaded+want > *budget {
		return fmt.Errorf("tensors reference %d bytes or more in total, more than their data files hold (%d bytes): overlapping ranges", *loaded+want, *budget)
	}
	buf := make([]byte, want)
	if _, err := ef.f.ReadAt(buf, ref.offset); err != nil {
		return fmt.Errorf("read %d bytes at offset %d of %q: %v", want, ref.offset, ef.path, cause(err))
	}
	*loaded += want
	t.RawData = buf
	t.ExternalData = nil
	t.DataLocation = onnxpb.TensorProto_DEFAULT
	return nil
}

// rawBytes returns the tensor's data in raw_data layout (little-endian),
// encoding typed fields when raw_data is empty. ok is false for tensors
// that have no fixed-size binary form (STRING, 4-bit types in typed fields).
// The tensor's data length must already have been checked.
func rawBytes(t *onnxpb.TensorProto) (raw []byte, ok bool) {
	if len(t.RawData) > 0 {
		return t.RawData, true
	}
	le := binary.LittleEndian
	dt := DataType(t.GetDataType())
	switch {
	case dt == Float || dt == onnxpb.TensorProto_COMPLEX64:
		raw = make([]byte, 4*len(t.FloatData))
		for i, v := range t.FloatData {
			le.PutUint32(raw[4*i:], math.Float32bits(v))
		}
	case dt == Double || dt == onnxpb.TensorProto_COMPLEX128:
		raw = make([]byte, 8*len(t.DoubleData))
		for i, v := range t.DoubleData {
			le.PutUint64(raw[8*i:], math.Float64bits(v))
		}
	case dt == Int64:
		raw = make([]byte, 8*len(t.Int64Data))
		for i, v := range t.Int64Data {
			le.PutUint64(raw[8*i:], uint64(v))
		}
	case dt == onnxpb.TensorProto_UINT64:
		raw = make([]byte, 8*len(t.Uint64Data))
		for i, v := range t.Uint64Data {
			le.PutUint64(raw[8*i:], v)
		}
	case dt == onnxpb.TensorProto_UINT32:
		raw = make([]byte, 4*len(t.Uint64Data))
		for i, v := range t.Uint64Data {
			le.PutUint32(raw[4*i:], uint32(v))
		}
	case dt == Int32:
		raw = make([]byte, 4*len(t.Int32Data))
		for i, v := range t.Int32Data {
			le.PutUint32(raw[4*i:], uint32(v))
		}
	case dt == onnxpb.TensorProto_INT16 || dt == onnxpb.TensorProto_UINT16 || dt == Float16 || dt == onnxpb.TensorProto_BFLOAT16:
		raw = make([]byte, 2*len(t.Int32Data))
		for i, v := range t.Int32Data {
			le.PutUint16(raw[2*i:], uint16(v))
		}
	case dt == Int8 || dt == Uint8 || dt == Bool || (dt >= float8First && dt <= float8Last):
		raw = make([]byte, len(t.Int32Data))
		for i, v := range t.Int32Data {
			raw[i] = byte(v)
		}
	default:
		return nil, false
	}
	return raw, true
}

// keepInline reports whether a tensor stays in the model file whatever the
// threshold: small integer tensors (Reshape shapes, Slice bounds, axes) are
// read by runtimes while they build the graph, and ONNX Runtime refuses to
// load them from external data.
func keepInline(t *onnxpb.TensorProto, size int) bool {
	dt := DataType(t.GetDataType())
	return (dt == Int64 || dt == Int32) && size < DefaultExternalThreshold
}

// extChunk is one tensor placed in the external data file.
type extChunk struct {
	t      *onnxpb.TensorProto
	data   []byte
	offset int64
}

// saveExternal writes a copy of m whose tensors of at least the threshold
// size live in one data file next to path; m itself is not changed. Both
// destinations are checked before anything is written; the data file is
// written first and removed again when writing the model (with
// writeModel, atomicfile.Write outside tests) fails, so that a failed save
// leaves no data file behind.
func saveExternal(path string, m *onnxpb.ModelProto, opts SaveOptions, limit int, writeModel func(string, []byte) error) error {
	threshold := opts.ExternalThreshold
	if threshold <= 0 {
		threshold = DefaultExternalThreshold
	}
	out := proto.Clone(m).(*onnxpb.ModelProto)
	dataName := ExternalDataName(path)
	var chunks []extChunk
	var end int64
	for _, lt := range allTensors(out) {
		t := lt.t
		if External(t) {
			return fmt.Errorf("save %s: %s: external data was never loaded", path, lt.where)
		}
		if err := checkTensorData(t); err != nil {
			return fmt.Errorf("save %s: %s: %w", path, lt.where, err)
		}
		raw, ok := rawBytes(t)
		if !ok || len(raw) < threshold || keepInline(t, len(raw)) {
			continue
		}
		align := int64(smallAlign)
		if len(raw) >= pageAlignMin {
			align = pageAlign
		}
		off := (end + align - 1) / align * align
		chunks = append(chunks, extChunk{t: t, data: raw, offset: off})
		end = off + int64(len(raw))
	}
	for _, c := range chunks {
		t := c.t
		t.RawData, t.FloatData, t.DoubleData, t.Int32Data, t.Int64Data, t.Uint64Data = nil, nil, nil, nil, nil, nil
		t.DataLocation = onnxpb.TensorProto_EXTERNAL
		t.ExternalData = []*onnxpb.StringStringEntryProto{
			{Key: "location", Value: dataName},
			{Key: "offset", Value: strconv.FormatInt(c.offset, 10)},
			{Key: "length", Value: strconv.Itoa(len(c.data))},
		}
	}
	model, err := Encode(out)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if len(model) > limit {
		return fmt.Errorf("save %s: the model is %d bytes even with tensors of %d bytes or more in %s, over the 2 GiB protobuf limit; lower the external data threshold", path, len(model), threshold, dataName)
	}
	if err := atomicfile.CheckDestination(path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	dataPath := filepath.Join(filepath.Dir(path), dataName)
	if len(chunks) > 0 {
		if err := atomicfile.CheckDestination(dataPath); err != nil {
			return fmt.Errorf("save %s: external data: %w", path, err)
		}
		err := atomicfile.WriteFunc(dataPath, func(w io.Writer) error {
			var pos int64
			var zeros [pageAlign]byte
			for _, c := range chunks {
				if _, err := w.Write(zeros[:c.offset-pos]); err != nil {
					return err
				}
				if _, err := w.Write(c.data); err != nil {
					return err
				}
				pos = c.offset + int64(len(c.data))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("save %s: external data %s: %w", path, dataPath, err)
		}
	}
	if err := writeModel(path, model); err != nil {
		if len(chunks) > 0 {
			if rerr := os.Remove(dataPath); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("remove the external data written for it: %w", rerr))
			}
		}
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}

// Initializers returns every tensor stored in the model: graph initializers,
// Constant node values and tensors in attributes, including subgraphs.
func Initializers(m *onnxpb.ModelProto) []*onnxpb.TensorProto {
	var out []*onnxpb.TensorProto
	var walkGraph func(g *onnxpb.GraphProto)
	var walkAttr func(a *onnxpb.AttributeProto)
	walkAttr = func(a *onnxpb.AttributeProto) {
		if a.T != nil {
			out = append(out, a.T)
		}
		out = append(out, a.Tensors...)
		if a.G != nil {
			walkGraph(a.G)
		}
		for _, g := range a.Graphs {
			walkGraph(g)
		}
	}
	walkGraph = func(g *onnxpb.GraphProto) {
		out = append(out, g.Initializer...)
		for _, n := range g.Node {
			for _, a := range n.Attribute {
				walkAttr(a)
			}
		}
	}
	if m.GetGraph() != nil {
		walkGraph(m.Graph)
	}
	return out
}
