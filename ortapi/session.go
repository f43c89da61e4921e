package ortapi

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"unsafe"
)

// Tensor is a dense tensor in row-major order, with float32 elements.
type Tensor struct {
	Shape []int64
	Data  []float32
}

// Info describes one input or output of a model as ONNX Runtime sees it.
type Info struct {
	Name string
	// Shape has -1 for dimensions that are symbolic or unknown.
	Shape []int64
	// DataType is the element type: "float", "double", "int64", "int32",
	// "uint8", "int8", "bool", ... ("other" for non-tensor values).
	DataType string
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

func (l OptLevel) c() (uintptr, error) {
	switch l {
	case OptAll:
		return graphOptEnabled, nil
	case OptExtended:
		return graphOptExtended, nil
	case OptBasic:
		return graphOptBasic, nil
	case OptDisabled:
		return graphOptDisable, nil
	}
	return 0, fmt.Errorf("unknown graph optimization level %d", int(l))
}

// Options configures a session. The zero value runs on one intra-op thread
// with every graph optimization.
type Options struct {
	// IntraOpThreads is the number of threads one operator may use
	// (0 means 1, for reproducible single-thread latency).
	IntraOpThreads int
	// Optimization is the graph optimization level.
	Optimization OptLevel
	// OptimizedModelPath, when set, is where ONNX Runtime writes the
	// graph it runs after its optimizations (fusions, layout changes), as
	// an ONNX file, when the session is created.
	OptimizedModelPath string
	// ProfilePrefix, when set, turns on ONNX Runtime's profiler: it writes
	// the time of every node run, as Chrome-trace JSON, to a file named
	// PREFIX_<date>.json when the session is closed.
	ProfilePrefix string
}

// Session is a model loaded into ONNX Runtime. Run may be called from
// several goroutines at once; Close must be called once when done.
type Session struct {
	rt      *Runtime
	name    string // the file, or "model bytes", for messages
	sess    uintptr
	inputs  []Info
	outputs []Info
	// C strings of the names and arrays of their addresses, for Run.
	inNames, outNames []byte
	inPtrs, outPtrs   []uintptr
}

// NewSessionFromFile loads the ONNX model at path (external data is read
// relative to its folder).
func (r *Runtime) NewSessionFromFile(path string, opts Options) (*Session, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("ONNX Runtime: load %s: %w", path, oneLine(err))
	}
	p, err := osPath(path)
	if err != nil {
		return nil, fmt.Errorf("ONNX Runtime: load %q: %w", path, err)
	}
	return r.newSession(path, opts, func(so uintptr, out *uintptr) error {
		return r.fns.call(fnCreateSession, r.env, uintptr(unsafe.Pointer(&p[0])), so, uintptr(unsafe.Pointer(out)))
	})
}

// NewSession loads an ONNX model from its serialized bytes (a model with
// external data must be loaded from its file instead).
func (r *Runtime) NewSession(model []byte, opts Options) (*Session, error) {
	if len(model) == 0 {
		return nil, fmt.Errorf("ONNX Runtime: load model bytes: empty model")
	}
	return r.newSession("model bytes", opts, func(so uintptr, out *uintptr) error {
		err := r.fns.call(fnCreateSessionFromArray, r.env, uintptr(unsafe.Pointer(&model[0])), uintptr(len(model)), so, uintptr(unsafe.Pointer(out)))
		runtime.KeepAlive(model)
		return err
	})
}

func (r *Runtime) newSession(name string, opts Options, create func(so uintptr, out *uintptr) error) (*Session, error) {
	if r.env == 0 {
		return nil, fmt.Errorf("ONNX Runtime: load %s: runtime is closed", name)
	}
	var so uintptr
	if err := r.fns.call(fnCreateSessionOptions, uintptr(unsafe.Pointer(&so))); err != nil {
		return nil, fmt.Errorf("ONNX Runtime session options: %w", err)
	}
	defer r.fns.release(fnReleaseSessionOptions, so)
	threads := max(opts.IntraOpThreads, 1)
	if err := r.fns.call(fnSetIntraOpNumThreads, so, uintptr(threads)); err != nil {
		return nil, fmt.Errorf("ONNX Runtime: set %d intra-op threads: %w", threads, err)
	}
	if err := r.fns.call(fnSetInterOpNumThreads, so, 1); err != nil {
		return nil, fmt.Errorf("ONNX Runtime: set inter-op threads: %w", err)
	}
	level, err := opts.Optimization.c()
	if err != nil {
		return nil, err
	}
	if err := r.fns.call(fnSetSessionGraphOptimizationLvl, so, level); err != nil {
		return nil, fmt.Errorf("ONNX Runtime: set optimization level %s: %w", opts.Optimization, err)
	}
	if opts.OptimizedModelPath != "" {
		p, err := osPath(opts.OptimizedModelPath)
		if err != nil {
			return nil, fmt.Errorf("ONNX Runtime: optimized model path %q: %w", opts.OptimizedModelPath, err)
		}
		if err := r.fns.call(fnSetOptimizedModelFilePath, so, uintptr(unsafe.Pointer(&p[0]))); err != nil {
			return nil, fmt.Errorf("ONNX Runtime: optimized model path %s: %w", opts.OptimizedModelPath, err)
		}
	}
	if opts.ProfilePrefix != "" {
		p, err := osPath(opts.ProfilePrefix)
		if err != nil {
			return nil, fmt.Errorf("ONNX Runtime: profile prefix %q: %w", opts.ProfilePrefix, err)
		}
		if err := r.fns.call(fnEnableProfiling, so, uintptr(unsafe.Pointer(&p[0]))); err != nil {
			return nil, fmt.Errorf("ONNX Runtime: profile %s: %w", opts.ProfilePrefix, err)
		}
	}
	s := &Session{rt: r, name: name}
	if err := create(so, &s.sess); err != nil {
		return nil, fmt.Errorf("ONNX Runtime: load %s: %w", name, err)
	}
	if s.inputs, err = s.infos(fnSessionGetInputCount, fnSessionGetInputName, fnSessionGetInputTypeInfo); err == nil {
		s.outputs, err = s.infos(fnSessionGetOutputCount, fnSessionGetOutputName, fnSessionGetOutputTypeInfo)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("ONNX Runtime: inputs and outputs of %s: %w", name, err)
	}
	s.inNames, s.inPtrs = nameTable(s.inputs)
	s.outNames, s.outPtrs = nameTable(s.outputs)
	return s, nil
}

// nameTable packs the names as consecutive C strings and returns their
// addresses. The addresses stay valid while the returned buffer is
// referenced (Go's heap does not move objects).
func nameTable(infos []Info) ([]byte, []uintptr) {
	n := 0
	for _, in := range infos {
		n += len(in.Name) + 1
	}
	buf := make([]byte, n+1)
	ptrs := make([]uintptr, len(infos)+1)
	off := 0
	for i, in := range infos {
		copy(buf[off:], in.Name)
		ptrs[i] = uintptr(unsafe.Pointer(&buf[off]))
		off += len(in.Name) + 1
	}
	return buf, ptrs
}

// infos reads the names and types of the session's inputs or outputs.
func (s *Session) infos(countFn, nameFn, typeFn int) ([]Info, error) {
	f := s.rt.fns
	var n uintptr
	if err := f.call(countFn, s.sess, uintptr(unsafe.Pointer(&n))); err != nil {
		return nil, err
	}
	out := make([]Info, n)
	for i := range out {
		var name uintptr
		if err := f.call(nameFn, s.sess, uintptr(i), s.rt.alloc, uintptr(unsafe.Pointer(&name))); err != nil {
			return nil, err
		}
		out[i].Name = goString(name)
		if err := f.call(fnAllocatorFree, s.rt.alloc, name); err != nil {
			return nil, err
		}
		var ti uintptr
		if err := f.call(typeFn, s.sess, uintptr(i), uintptr(unsafe.Pointer(&ti))); err != nil {
			return nil, err
		}
		var tensorInfo uintptr
		err := f.call(fnCastTypeInfoToTensorInfo, ti, uintptr(unsafe.Pointer(&tensorInfo)))
		if err == nil && tensorInfo != 0 {
			var elem int32
			out[i].Shape, elem, err = f.typeAndShape(tensorInfo)
			out[i].DataType = typeName(elem)
		} else if err == nil {
			out[i].DataType = "other"
		}
		f.release(fnReleaseTypeInfo, ti)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", out[i].Name, err)
		}
	}
	return out, nil
}

// typeAndShape reads an OrtTensorTypeAndShapeInfo.
func (a *api) typeAndShape(info uintptr) ([]int64, int32, error) {
	var elem int32
	if err := a.call(fnGetTensorElementType, info, uintptr(unsafe.Pointer(&elem))); err != nil {
		return nil, 0, err
	}
	var n uintptr
	if err := a.call(fnGetDimensionsCount, info, uintptr(unsafe.Pointer(&n))); err != nil {
		return nil, 0, err
	}
	dims := make([]int64, n+1) // +1: a valid address even for rank 0
	if err := a.call(fnGetDimensions, info, uintptr(unsafe.Pointer(&dims[0])), n); err != nil {
		return nil, 0, err
	}
	return dims[:n], elem, nil
}

func typeName(t int32) string {
	switch t {
	case elemFloat:
		return "float"
	case elemDouble:
		return "double"
	case elemInt64:
		return "int64"
	case elemInt32:
		return "int32"
	case elemUint8:
		return "uint8"
	case elemInt8:
		return "int8"
	case elemBool:
		return "bool"
	case elemUint16:
		return "uint16"
	case elemInt16:
		return "int16"
	case elemUint32:
		return "uint32"
	case elemUint64:
		return "uint64"
	}
	return fmt.Sprintf("type%d", t)
}

// Inputs returns the model's inputs, in the model's order.
func (s *Session) Inputs() []Info { return append([]Info(nil), s.inputs...) }

// Outputs returns the model's outputs, in the model's order.
func (s *Session) Outputs() []Info { return append([]Info(nil), s.outputs...) }

// Close releases the session. It is safe to call more than once.
func (s *Session) Close() error {
	if s.sess != 0 {
		s.rt.fns.release(fnReleaseSession, s.sess)
		s.sess = 0
	}
	return nil
}

// Run feeds inputs (one per model input, by name) and returns the outputs
// named in outputNames (all outputs when empty). Inputs declared as double,
// int64 or int32 are converted from the float32 data; numeric outputs of
// any type are returned converted to float32.
func (s *Session) Run(inputs map[string]Tensor, outputNames []string) (map[string]Tensor, error) {
	b, err := s.Bind(inputs)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	want := outputNames
	if len(want) == 0 {
		for _, o := range s.outputs {
			want = append(want, o.Name)
		}
	}
	for _, name := range want {
		if !hasName(s.outputs, name) {
			return nil, fmt.Errorf("run %s: %q is not an output of the model (outputs: %s)", s.name, name, names(s.outputs))
		}
	}
	outs, err := b.run()
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, v := range outs {
			s.rt.fns.release(fnReleaseValue, v)
		}
	}()
	result := make(map[string]Tensor, len(want))
	for _, name := range want {
		for i, info := range s.outputs {
			if info.Name != name {
				continue
			}
			t, err := s.rt.fns.toTensor(outs[i])
			if err != nil {
				return nil, fmt.Errorf("run %s: output %q: %w", s.name, name, err)
			}
			result[name] = t
		}
	}
	return result, nil
}

// Bound is a session with its inputs copied into ONNX Runtime once, for
// timing runs without the cost of building inputs and reading outputs.
// Close it when done; it must not outlive its session.
type Bound struct {
	s      *Session
	values []uintptr // OrtValue* per model input
}

// Bind copies inputs (one per model input, by name) into ONNX Runtime
// tensors. See Run for the accepted types.
func (s *Session) Bind(inputs map[string]Tensor) (*Bound, error) {
	if s.sess == 0 {
		return nil, fmt.Errorf("run %s: session is closed", s.name)
	}
	for name := range inputs {
		if !hasName(s.inputs, name) {
			return nil, fmt.Errorf("run %s: %q is not an input of the model (inputs: %s)", s.name, name, names(s.inputs))
		}
	}
	b := &Bound{s: s, values: make([]uintptr, len(s.inputs)+1)}
	for i, info := range s.inputs {
		t, ok := inputs[info.Name]
		if !ok {
			b.Close()
			return nil, fmt.Errorf("run %s: missing input %q (inputs: %s)", s.name, info.Name, names(s.inputs))
		}
		v, err := s.rt.newValue(info, t)
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("run %s: input %q: %w", s.name, info.Name, err)
		}
		b.values[i] = v
	}
	return b, nil
}

// Run runs the model once on the bound inputs and discards the outputs.
func (b *Bound) Run() error {
	outs, err := b.run()
	for _, v := range outs {
		b.s.rt.fns.release(fnReleaseValue, v)
	}
	return err
}

// run runs the session and returns every output's OrtValue, in the
// model's order; the caller releases them.
func (b *Bound) run() ([]uintptr, error) {
	s := b.s
	if s.sess == 0 {
		return nil, fmt.Errorf("run %s: session is closed", s.name)
	}
	outs := make([]uintptr, len(s.outputs)+1)
	err := s.rt.fns.call(fnRun, s.sess, 0,
		uintptr(unsafe.Pointer(&s.inPtrs[0])), uintptr(unsafe.Pointer(&b.values[0])), uintptr(len(s.inputs)),
		uintptr(unsafe.Pointer(&s.outPtrs[0])), uintptr(len(s.outputs)), uintptr(unsafe.Pointer(&outs[0])))
	runtime.KeepAlive(s.inNames)
	runtime.KeepAlive(s.outNames)
	if err != nil {
		for _, v := range outs {
			s.rt.fns.release(fnReleaseValue, v)
		}
		return nil, fmt.Errorf("run %s: %w", s.name, err)
	}
	return outs[:len(s.outputs)], nil
}

// Close releases the bound inputs. It is safe to call more than once.
func (b *Bound) Close() error {
	for i, v := range b.values {
		b.s.rt.fns.release(fnReleaseValue, v)
		b.values[i] = 0
	}
	return nil
}

// newValue creates an ONNX Runtime tensor of info's element type holding
// t's data.
func (r *Runtime) newValue(info Info, t Tensor) (uintptr, error) {
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v has a negative dimension", t.Shape)
		}
		if d != 0 && n > (1<<40)/d {
			return 0, fmt.Errorf("shape %v is too large", t.Shape)
		}
		n *= d
	}
	if int64(len(t.Data)) != n {
		return 0, fmt.Errorf("shape %v needs %d values, got %d", t.Shape, n, len(t.Data))
	}
	if len(info.Shape) != len(t.Shape) {
		return 0, fmt.Errorf("shape %v has rank %d, the model wants rank %d (%v)", t.Shape, len(t.Shape), len(info.Shape), info.Shape)
	}
	for i, d := range info.Shape {
		if d >= 0 && d != t.Shape[i] {
			return 0, fmt.Errorf("shape %v does not match the model's %v", t.Shape, info.Shape)
		}
	}
	var elem uintptr
	switch info.DataType {
	case "float":
		elem = elemFloat
	case "double":
		elem = elemDouble
	case "int64":
		elem = elemInt64
	case "int32":
		elem = elemInt32
	default:
		return 0, fmt.Errorf("element type %s is not supported (float, double, int64, int32)", info.DataType)
	}
	shape := append(append([]int64(nil), t.Shape...), 0) // +1: a valid address even for rank 0
	var v uintptr
	if err := r.fns.call(fnCreateTensorAsOrtValue, r.alloc, uintptr(unsafe.Pointer(&shape[0])), uintptr(len(t.Shape)), elem, uintptr(unsafe.Pointer(&v))); err != nil {
		return 0, err
	}
	if n == 0 {
		return v, nil
	}
	var data uintptr
	if err := r.fns.call(fnGetTensorMutableData, v, uintptr(unsafe.Pointer(&data))); err != nil {
		r.fns.release(fnReleaseValue, v)
		return 0, err
	}
	switch elem {
	case elemFloat:
		copy(unsafe.Slice((*float32)(ptr(data)), n), t.Data)
	case elemDouble:
		fill(unsafe.Slice((*float64)(ptr(data)), n), t.Data)
	case elemInt64:
		fill(unsafe.Slice((*int64)(ptr(data)), n), t.Data)
	case elemInt32:
		fill(unsafe.Slice((*int32)(ptr(data)), n), t.Data)
	}
	return v, nil
}

func fill[T float64 | int64 | int32](dst []T, src []float32) {
	for i, v := range src {
		dst[i] = T(v)
	}
}

// toTensor copies a numeric tensor OrtValue into a float32 Tensor.
func (a *api) toTensor(v uintptr) (Tensor, error) {
	if v == 0 {
		return Tensor{}, fmt.Errorf("ONNX Runtime returned no value")
	}
	var info uintptr
	if err := a.call(fnGetTensorTypeAndShape, v, uintptr(unsafe.Pointer(&info))); err != nil {
		return Tensor{}, fmt.Errorf("not a tensor: %w", err)
	}
	defer a.release(fnReleaseTensorTypeAndShapeInfo, info)
	shape, elem, err := a.typeAndShape(info)
	if err != nil {
		return Tensor{}, err
	}
	var count uintptr
	if err := a.call(fnGetTensorShapeElementCount, info, uintptr(unsafe.Pointer(&count))); err != nil {
		return Tensor{}, err
	}
	n := int(count)
	out := Tensor{Shape: shape, Data: make([]float32, n)}
	if n == 0 {
		return out, nil
	}
	var data uintptr
	if err := a.call(fnGetTensorMutableData, v, uintptr(unsafe.Pointer(&data))); err != nil {
		return Tensor{}, err
	}
	p := ptr(data)
	switch elem {
	case elemFloat:
		copy(out.Data, unsafe.Slice((*float32)(p), n))
	case elemDouble:
		convert(out.Data, unsafe.Slice((*float64)(p), n))
	case elemInt64:
		convert(out.Data, unsafe.Slice((*int64)(p), n))
	case elemInt32:
		convert(out.Data, unsafe.Slice((*int32)(p), n))
	case elemUint8, elemBool:
		convert(out.Data, unsafe.Slice((*uint8)(p), n))
	case elemInt8:
		convert(out.Data, unsafe.Slice((*int8)(p), n))
	default:
		return Tensor{}, fmt.Errorf("element type %s is not numeric", typeName(elem))
	}
	return out, nil
}

func convert[T float64 | int64 | int32 | uint8 | int8](dst []float32, src []T) {
	for i, v := range src {
		dst[i] = float32(v)
	}
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
	return strings.Join(ns, ", ")
}
