// Package ortrun runs ONNX models in ONNX Runtime, the reference runtime that
// lprconv's users deploy to, through github.com/yalue/onnxruntime_go.
//
// The bindings use cgo and load libonnxruntime.so.1 at run time (see
// LibraryPath). Tests and benchmarks use this package directly; the default
// lprconv binary stays pure Go and may import it only from files built with
// the `ort` build tag.
package ortrun

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/lprconv/lprconv/internal/ortrun/libpath"
)

// Tensor is a dense float32 tensor in row-major order.
type Tensor struct {
	Shape []int64
	Data  []float32
}

// OptLevel is ONNX Runtime's graph optimization level.
type OptLevel int

// Graph optimization levels. The zero value, OptAll, is ONNX Runtime's
// default.
const (
	OptAll      OptLevel = iota // every optimization, including layout (NCHWc) transforms
	OptExtended                 // basic plus complex node fusions
	OptBasic                    // constant folding and redundant-node removal
	OptDisabled                 // run the graph as written
)

// String returns the level's name as used on the command line.
func (l OptLevel) String() string {
	switch l {
	case OptAll:
		return "all"
	case OptExtended:
		return "extended"
	case OptBasic:
		return "basic"
	case OptDisabled:
		return "disabled"
	}
	return fmt.Sprintf("OptLevel(%d)", int(l))
}

// ParseOptLevel parses "all", "extended", "basic" or "disabled".
func ParseOptLevel(s string) (OptLevel, error) {
	for _, l := range []OptLevel{OptAll, OptExtended, OptBasic, OptDisabled} {
		if l.String() == s {
			return l, nil
		}
	}
	return 0, fmt.Errorf("unknown graph optimization level %q (want all, extended, basic or disabled)", s)
}

func (l OptLevel) ort() (ort.GraphOptimizationLevel, error) {
	switch l {
	case OptAll:
		return ort.GraphOptimizationLevelEnableAll, nil
	case OptExtended:
		return ort.GraphOptimizationLevelEnableExtended, nil
	case OptBasic:
		return ort.GraphOptimizationLevelEnableBasic, nil
	case OptDisabled:
		return ort.GraphOptimizationLevelDisableAll, nil
	}
	return 0, fmt.Errorf("unknown graph optimization level %d", int(l))
}

// Options configures a session. The zero value runs on one intra-op thread
// with every graph optimization enabled.
type Options struct {
	// IntraOpThreads is the number of threads one operator may use
	// (0 means 1, for reproducible single-thread latency).
	IntraOpThreads int
	// Optimization is the graph optimization level.
	Optimization OptLevel
	// OptimizedModelPath, when set, is where ONNX Runtime writes the graph
	// it runs, after its optimizations (fusions, inserted casts), as ONNX.
	OptimizedModelPath string
}

// LibraryPath returns the path of libonnxruntime.so.1: $ONNXRUNTIME_LIB when
// set, otherwise the newest <version>/libonnxruntime.so.1 under
// /root/.cache/lprconv/ort, $XDG_CACHE_HOME/lprconv/ort or
// ~/.cache/lprconv/ort.
func LibraryPath() (string, error) {
	return libpath.Find()
}

// initState records the one-time initialization of the ONNX Runtime
// environment. It is package-level because the environment itself is
// process-global in onnxruntime_go (one OrtEnv per process, created by
// InitializeEnvironment and never safely re-created while sessions exist);
// the sync.Once makes Init safe to call from any number of goroutines and
// tests.
var initState struct {
	once sync.Once
	err  error
}

// Init loads the ONNX Runtime library found by LibraryPath and creates the
// process-wide environment. It runs once per process; later calls return
// the first call's result. Every other function in this package calls it.
func Init() error {
	initState.once.Do(func() {
		lib, err := LibraryPath()
		if err != nil {
			initState.err = err
			return
		}
		if ort.IsInitialized() {
			return
		}
		ort.SetSharedLibraryPath(lib)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			initState.err = fmt.Errorf("initialize ONNX Runtime from %s: %w", lib, err)
		}
	})
	return initState.err
}

// Version returns the version string of the loaded ONNX Runtime library.
func Version() (string, error) {
	if err := Init(); err != nil {
		return "", err
	}
	return ort.GetVersion(), nil
}

// Info describes one input or output of a model as ONNX Runtime sees it.
type Info struct {
	Name string
	// Shape has -1 for dimensions that are symbolic or unknown.
	Shape []int64
	// DataType is the element type, e.g. "float" or "int64".
	DataType string
}

// InputOutputInfo returns the inputs and outputs of the model at path, in
// the model's order.
func InputOutputInfo(path string) (inputs, outputs []Info, err error) {
	if err := Init(); err != nil {
		return nil, nil, err
	}
	ins, outs, err := ort.GetInputOutputInfo(path)
	if err != nil {
		return nil, nil, fmt.Errorf("ONNX Runtime: read inputs and outputs of %s: %w", path, err)
	}
	return convertInfo(ins), convertInfo(outs), nil
}

func convertInfo(in []ort.InputOutputInfo) []Info {
	out := make([]Info, len(in))
	for i, v := range in {
		out[i] = Info{Name: v.Name, Shape: append([]int64(nil), v.Dimensions...), DataType: typeName(v.DataType)}
	}
	return out
}

func typeName(t ort.TensorElementDataType) string {
	switch t {
	case ort.TensorElementDataTypeFloat:
		return "float"
	case ort.TensorElementDataTypeDouble:
		return "double"
	case ort.TensorElementDataTypeInt64:
		return "int64"
	case ort.TensorElementDataTypeInt32:
		return "int32"
	case ort.TensorElementDataTypeUint8:
		return "uint8"
	case ort.TensorElementDataTypeInt8:
		return "int8"
	case ort.TensorElementDataTypeBool:
		return "bool"
	case ort.TensorElementDataTypeFloat16:
		return "float16"
	}
	return t.String()
}

// Session is a model loaded into ONNX Runtime, for repeated runs (latency
// benchmarks, evaluation loops). Run may be called from several goroutines
// at once; Close must be called once when done.
type Session struct {
	path    string
	inputs  []Info
	outputs []Info
	sess    *ort.DynamicAdvancedSession
}

// NewSession loads the model at path into ONNX Runtime with opts.
func NewSession(path string, opts Options) (*Session, error) {
	if err := Init(); err != nil {
		return nil, err
	}
	ins, outs, err := InputOutputInfo(path)
	if err != nil {
		return nil, err
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("ONNX Runtime session options: %w", err)
	}
	defer so.Destroy()
	threads := opts.IntraOpThreads
	if threads <= 0 {
		threads = 1
	}
	if err := so.SetIntraOpNumThreads(threads); err != nil {
		return nil, fmt.Errorf("ONNX Runtime: set %d intra-op threads: %w", threads, err)
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("ONNX Runtime: set inter-op threads: %w", err)
	}
	level, err := opts.Optimization.ort()
	if err != nil {
		return nil, err
	}
	if err := so.SetGraphOptimizationLevel(level); err != nil {
		return nil, fmt.Errorf("ONNX Runtime: set optimization level %s: %w", opts.Optimization, err)
	}
	if opts.OptimizedModelPath != "" {
		if err := so.SetOptimizedModelFilePath(opts.OptimizedModelPath); err != nil {
			return nil, fmt.Errorf("ONNX Runtime: set optimized model path %s: %w", opts.OptimizedModelPath, err)
		}
	}
	inNames := make([]string, len(ins))
	for i, v := range ins {
		inNames[i] = v.Name
	}
	outNames := make([]string, len(outs))
	for i, v := range outs {
		outNames[i] = v.Name
	}
	s, err := ort.NewDynamicAdvancedSession(path, inNames, outNames, so)
	if err != nil {
		return nil, fmt.Errorf("ONNX Runtime: load %s: %w", path, err)
	}
	return &Session{path: path, inputs: ins, outputs: outs, sess: s}, nil
}

// Inputs returns the model's inputs.
func (s *Session) Inputs() []Info { return append([]Info(nil), s.inputs...) }

// Outputs returns the model's outputs.
func (s *Session) Outputs() []Info { return append([]Info(nil), s.outputs...) }

// Close releases the session. It is safe to call more than once.
func (s *Session) Close() error {
	if s.sess == nil {
		return nil
	}
	err := s.sess.Destroy()
	s.sess = nil
	return err
}

// Run feeds inputs (one per model input, by name) and returns the outputs
// named in outputNames (all outputs when outputNames is empty). Float32
// inputs are passed as is; inputs declared as double, int64 or int32 are
// converted from the float32 data. Numeric outputs of any type are returned
// converted to float32.
func (s *Session) Run(inputs map[string]Tensor, outputNames []string) (map[string]Tensor, error) {
	if s.sess == nil {
		return nil, fmt.Errorf("run %s: session is closed", s.path)
	}
	for name := range inputs {
		if !hasName(s.inputs, name) {
			return nil, fmt.Errorf("run %s: %q is not an input of the model (inputs: %s)", s.path, name, names(s.inputs))
		}
	}
	want := outputNames
	if len(want) == 0 {
		want = make([]string, len(s.outputs))
		for i, o := range s.outputs {
			want[i] = o.Name
		}
	}
	for _, name := range want {
		if !hasName(s.outputs, name) {
			return nil, fmt.Errorf("run %s: %q is not an output of the model (outputs: %s)", s.path, name, names(s.outputs))
		}
	}
	values := make([]ort.Value, len(s.inputs))
	defer func() {
		for _, v := range values {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i, info := range s.inputs {
		t, ok := inputs[info.Name]
		if !ok {
			return nil, fmt.Errorf("run %s: missing input %q (inputs: %s)", s.path, info.Name, names(s.inputs))
		}
		v, err := newValue(info, t)
		if err != nil {
			return nil, fmt.Errorf("run %s: input %q: %w", s.path, info.Name, err)
		}
		values[i] = v
	}
	outs := make([]ort.Value, len(s.outputs))
	defer func() {
		for _, v := range outs {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	if err := s.sess.Run(values, outs); err != nil {
		return nil, fmt.Errorf("run %s: %w", s.path, err)
	}
	result := make(map[string]Tensor, len(want))
	for _, name := range want {
		for i, info := range s.outputs {
			if info.Name != name {
				continue
			}
			t, err := toTensor(outs[i])
			if err != nil {
				return nil, fmt.Errorf("run %s: output %q: %w", s.path, name, err)
			}
			result[name] = t
		}
	}
	return result, nil
}

// Run loads the model at path with default Options, runs it once and
// closes it. See Session.Run.
func Run(modelPath string, inputs map[string]Tensor, outputNames []string) (map[string]Tensor, error) {
	s, err := NewSession(modelPath, Options{})
	if err != nil {
		return nil, err
	}
	out, err := s.Run(inputs, outputNames)
	if cerr := s.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close session of %s: %w", modelPath, cerr)
	}
	return out, err
}

func hasName(infos []Info, name string) bool {
	for _, v := range infos {
		if v.Name == name {
			return true
		}
	}
	return false
}

func names(infos []Info) string {
	ns := make([]string, len(infos))
	for i, v := range infos {
		ns[i] = fmt.Sprintf("%q", v.Name)
	}
	sort.Strings(ns)
	s := ""
	for i, n := range ns {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}

func newValue(info Info, t Tensor) (ort.Value, error) {
	shape := ort.NewShape(t.Shape...)
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return nil, fmt.Errorf("shape %v has a negative dimension", t.Shape)
		}
		if d != 0 && n > (1<<62)/d {
			return nil, fmt.Errorf("shape %v is too large", t.Shape)
		}
		n *= d
	}
	if int64(len(t.Data)) != n {
		return nil, fmt.Errorf("shape %v needs %d values, got %d", t.Shape, n, len(t.Data))
	}
	if len(info.Shape) != len(t.Shape) {
		return nil, fmt.Errorf("shape %v has rank %d, the model wants rank %d (%v)", t.Shape, len(t.Shape), len(info.Shape), info.Shape)
	}
	for i, d := range info.Shape {
		if d >= 0 && d != t.Shape[i] {
			return nil, fmt.Errorf("shape %v does not match the model's %v", t.Shape, info.Shape)
		}
	}
	if len(t.Shape) == 0 {
		switch info.DataType {
		case "float":
			return ort.NewScalar(t.Data[0])
		case "double":
			return ort.NewScalar(float64(t.Data[0]))
		case "int64":
			return ort.NewScalar(int64(t.Data[0]))
		case "int32":
			return ort.NewScalar(int32(t.Data[0]))
		}
	}
	switch info.DataType {
	case "float":
		return ort.NewTensor(shape, append([]float32(nil), t.Data...))
	case "double":
		return ort.NewTensor(shape, convert[float64](t.Data))
	case "int64":
		return ort.NewTensor(shape, convert[int64](t.Data))
	case "int32":
		return ort.NewTensor(shape, convert[int32](t.Data))
	}
	return nil, fmt.Errorf("element type %s is not supported (float, double, int64, int32)", info.DataType)
}

func convert[T float64 | int64 | int32](in []float32) []T {
	out := make([]T, len(in))
	for i, v := range in {
		out[i] = T(v)
	}
	return out
}

func toTensor(v ort.Value) (Tensor, error) {
	if v == nil {
		return Tensor{}, errors.New("ONNX Runtime returned no value")
	}
	shape := append([]int64(nil), v.GetShape()...)
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		return Tensor{Shape: shape, Data: append([]float32(nil), t.GetData()...)}, nil
	case *ort.Tensor[float64]:
		return Tensor{Shape: shape, Data: toFloat32(t.GetData())}, nil
	case *ort.Tensor[int64]:
		return Tensor{Shape: shape, Data: toFloat32(t.GetData())}, nil
	case *ort.Tensor[int32]:
		return Tensor{Shape: shape, Data: toFloat32(t.GetData())}, nil
	case *ort.Tensor[uint8]:
		return Tensor{Shape: shape, Data: toFloat32(t.GetData())}, nil
	case *ort.Tensor[int8]:
		return Tensor{Shape: shape, Data: toFloat32(t.GetData())}, nil
	case *ort.Tensor[bool]:
		d := t.GetData()
		out := make([]float32, len(d))
		for i, b := range d {
			if b {
				out[i] = 1
			}
		}
		return Tensor{Shape: shape, Data: out}, nil
	}
	return Tensor{}, fmt.Errorf("output of type %T is not a numeric tensor", v)
}

func toFloat32[T float64 | int64 | int32 | uint8 | int8](in []T) []float32 {
	out := make([]float32, len(in))
	for i, v := range in {
		out[i] = float32(v)
	}
	return out
}
