package engine

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/lprconv/lprconv/engine/kernels"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Options configures Compile.
type Options struct {
	// Threads is the number of threads ops may use (default runtime.NumCPU()).
	Threads int
	// InputShapes overrides the shapes of graph inputs by name. Dynamic
	// dimensions not given here default to 1 for the first (batch)
	// dimension; any other dynamic dimension must be given.
	InputShapes map[string][]int
	// Trainable names initializers that stay parameters: they are never
	// constant-folded, Param returns their storage, and a backward pass
	// may compute their gradients.
	Trainable []string
	// Outputs names extra values (any node output or graph input) that Run
	// returns next to the graph outputs and Value can read after Forward.
	Outputs []string
	// ConstantInputs freezes graph inputs to the given values: they become
	// constants, so that shapes or indices computed from them fold at
	// Compile time, and Run no longer needs them.
	ConstantInputs map[string]*Tensor
	// KeepForBackward keeps every activation alive until the end of the
	// program (no buffer reuse), so that a backward pass can read the
	// inputs and outputs of every op after Forward.
	KeepForBackward bool
	// nchwOnly keeps every activation NCHW (no chooseLayouts), for tests.
	nchwOnly bool
}

// value is one named tensor of the graph.
type value struct {
	id      int
	name    string
	shape   []int
	dtype   DType
	konst   *Tensor // constant (initializer or folded); nil otherwise
	param   bool    // trainable initializer; t holds its storage
	input   bool    // graph input
	def     int     // step that produces it (-1 for inputs and params)
	lastUse int     // last step that reads it (math.MaxInt32: kept to the end)
	alias   *value  // root value whose storage this value views
	offset  int     // offset in the float arena (roots only)
	t       *Tensor // run-time tensor (konst for constants)
}

// Step is one op of the compiled program with its node and tensors.
type Step struct {
	Node  *onnxpb.NodeProto
	Index int // index of the node in the graph
	Op    Op
	In    []*Tensor // nil entries for absent optional inputs
	Out   []*Tensor
	in    []*value
	out   []*value
}

// Program is a graph compiled for fixed input shapes: shapes inferred,
// constants folded, buffers planned. Run and Forward are safe for
// concurrent use (they are serialized).
type Program struct {
	mu       sync.Mutex
	opset    int
	values   []*value
	byName   map[string]*value
	steps    []*Step
	inputs   []*value
	outputs  []*value
	observed []*value
	params   map[string]*value
	arena    []float32
	ctx      *Ctx
	peak     int        // planned activation bytes
	grads    *gradState // backward state (train.go), built on the first Backward
	// share, during Compile only, is the program whose initializers and
	// folded BatchNormalization weights this one reuses (batch.go).
	share *Program
	// bnFolded holds the weights foldBN made, by name, for sharing.
	bnFolded map[string]*Tensor
	// packedW holds the constant weights packed for pixel-major pointwise
	// convolutions, by weight name, for sharing (pixelmajor.go).
	packedW map[string]*kernels.PackedWeights
}

type opDef struct {
	attrs []string
	build func(b *nodeBuild) (Op, error)
}

// Compile checks that every node of m is supported, infers all shapes for
// the input shapes in opts, folds constant subgraphs and plans buffers.
func Compile(m *onnxpb.ModelProto, opts Options) (*Program, error) {
	return compile(m, opts, nil)
}

// compile is Compile; with share non-nil (compiled from the same model
// and Trainable names), the program reuses share's initializer tensors
// (trainable ones included, so that updates to them reach both) and its
// folded BatchNormalization weights instead of making its own copies.
func compile(m *onnxpb.ModelProto, opts Options, share *Program) (*Program, error) {
	if m == nil || m.Graph == nil {
		return nil, errors.New("compile: model has no graph")
	}
	opset := 0
	for _, o := range m.OpsetImport {
		if o.Domain == "" || o.Domain == "ai.onnx" {
			opset = int(o.Version)
		}
	}
	if opset == 0 {
		return nil, errors.New("compile: model imports no ai.onnx opset")
	}
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	p := &Program{
		opset:  opset,
		byName: map[string]*value{},
		params: map[string]*value{},
		share:  share, bnFolded: map[string]*Tensor{}, packedW: map[string]*kernels.PackedWeights{},
		ctx: &Ctx{K: kernels.NewContext(threads), Threads: threads, pool: newPool(threads)},
	}
	g := m.Graph
	trainable := map[string]bool{}
	for _, n := range opts.Trainable {
		trainable[n] = true
	}
	newValue := func(name string) *value {
		v := &value{id: len(p.values), name: name, def: -1, lastUse: -1}
		p.values = append(p.values, v)
		if name != "" {
			p.byName[name] = v
		}
		return v
	}
	for _, init := range g.Initializer {
		if sv := share.sharedInit(init.Name); sv != nil {
			v := newValue(init.Name)
			v.shape, v.dtype, v.param, v.konst, v.t = sv.shape, sv.dtype, sv.param, sv.konst, sv.t
			if v.param {
				p.params[init.Name] = v
				delete(trainable, init.Name)
			}
			continue
		}
		t, err := TensorFromProto(init)
		if err != nil {
			return nil, fmt.Errorf("compile: initializer: %w", err)
		}
		v := newValue(init.Name)
		v.shape, v.dtype = t.Shape, t.DType
		if trainable[init.Name] {
			if !t.DType.IsFloat() {
				return nil, fmt.Errorf("compile: trainable initializer %q is %s, not float", init.Name, t.DType)
			}
			v.param, v.t = true, t
			p.params[init.Name] = v
			delete(trainable, init.Name)
		} else {
			v.konst, v.t = t, t
		}
	}
	if len(trainable) > 0 {
		var names []string
		for n := range trainable {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("compile: trainable names %v are not initializers", names)
	}
	for _, in := range g.Input {
		if v := p.byName[in.Name]; v != nil && (v.konst != nil || v.param) {
			continue // initializer listed as an input (IR < 4): a constant
		}
		if t := opts.ConstantInputs[in.Name]; t != nil {
			if err := t.check(); err != nil {
				return nil, fmt.Errorf("compile: constant input %q: %w", in.Name, err)
			}
			v := newValue(in.Name)
			c := t.Clone()
			v.shape, v.dtype, v.konst, v.t = c.Shape, c.DType, c, c
			continue
		}
		shape, dt, err := inputShape(in, opts.InputShapes)
		if err != nil {
			return nil, fmt.Errorf("compile: %w", err)
		}
		v := newValue(in.Name)
		v.shape, v.dtype, v.input = shape, dt, true
		p.inputs = append(p.inputs, v)
	}
	for name := range opts.InputShapes {
		if v := p.byName[name]; (v == nil || !v.input) && opts.ConstantInputs[name] == nil {
			return nil, fmt.Errorf("compile: InputShapes names %q, which is not a graph input", name)
		}
	}

	for i, node := range g.Node {
		label := fmt.Sprintf("node %d (%s %q)", i, node.OpType, node.Name)
		if node.Domain != "" && node.Domain != "ai.onnx" {
			return nil, fmt.Errorf("compile: %s: domain %q is not supported", label, node.Domain)
		}
		def, ok := registry[node.OpType]
		if !ok {
			return nil, fmt.Errorf("compile: %s: operator %s is not supported", label, node.OpType)
		}
		b := &nodeBuild{node: node, index: i, opset: opset, attrs: map[string]*onnxpb.AttributeProto{}}
		for _, a := range node.Attribute {
			allowed := false
			for _, n := range def.attrs {
				if n == a.Name {
					allowed = true
				}
			}
			if !allowed {
				return nil, fmt.Errorf("compile: %s: attribute %q is not supported", label, a.Name)
			}
			if err := checkAttrType(a); err != nil {
				return nil, fmt.Errorf("compile: %s: %w", label, err)
			}
			b.attrs[a.Name] = a
		}
		for _, name := range node.Input {
			if name == "" {
				b.in = append(b.in, nil)
				continue
			}
			v := p.byName[name]
			if v == nil {
				return nil, fmt.Errorf("compile: %s: input %q is not produced by an earlier node, an initializer or a graph input", label, name)
			}
			b.in = append(b.in, v)
		}
		b.outs = make([]outSpec, len(node.Output))
		op, err := safeBuild(def.build, b)
		if err != nil {
			return nil, fmt.Errorf("compile: %s: %w", label, err)
		}
		outs := make([]*value, len(node.Output))
		allConst := true
		for j, name := range node.Output {
			s := b.outs[j]
			if !s.set {
				return nil, fmt.Errorf("compile: %s: output %d (%q) is not produced by this operator form", label, j, name)
			}
			if prev := p.byName[name]; name != "" && prev != nil {
				return nil, fmt.Errorf("compile: %s: output %q is already defined", label, name)
			}
			v := newValue(name)
			v.shape, v.dtype = s.shape, s.dtype
			if s.konst != nil {
				v.konst, v.t = s.konst, s.konst
			} else {
				allConst = false
			}
			outs[j] = v
		}
		if allConst {
			continue
		}
		foldable := true
		for _, v := range b.in {
			if v != nil && v.konst == nil {
				foldable = false
			}
		}
		st := &Step{Node: node, Index: i, Op: op, in: b.in, out: outs}
		if foldable {
			if err := p.fold(st); err != nil {
				return nil, fmt.Errorf("compile: %s: folding constants: %w", label, err)
			}
			continue
		}
		for _, v := range outs {
			v.def = len(p.steps)
		}
		p.steps = append(p.steps, st)
	}

	for _, o := range g.Output {
		v := p.byName[o.Name]
		if v == nil {
			return nil, fmt.Errorf("compile: graph output %q is not produced", o.Name)
		}
		p.outputs = append(p.outputs, v)
	}
	for _, name := range opts.Outputs {
		v := p.byName[name]
		if v == nil {
			return nil, fmt.Errorf("compile: observed value %q is not in the graph", name)
		}
		p.observed = append(p.observed, v)
	}
	p.fuse(opts.KeepForBackward)
	p.packPixelMajor()
	if !opts.KeepForBackward && !opts.nchwOnly {
		p.chooseLayouts()
	}
	if err := p.plan(opts.KeepForBackward); err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	p.share = nil
	return p, nil
}

// safeBuild runs an op builder, turning a panic (a bug on malformed input)
// into an error.
func safeBuild(build func(*nodeBuild) (Op, error), b *nodeBuild) (op Op, err error) {
	defer func() {
		if r := recover(); r != nil {
			op, err = nil, fmt.Errorf("internal error: %v", r)
		}
	}()
	op, err = build(b)
	if err == nil {
		for i, o := range b.outs {
			if !o.set {
				continue
			}
			if _, e := onnxio.ShapeSize(toInt64s(o.shape)); e != nil {
				return nil, fmt.Errorf("output %d: %w", i, e)
			}
		}
	}
	return op, err
}

// fold runs a step whose inputs are all constant and stores its outputs as
// constants.
func (p *Program) fold(st *Step) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	st.In = make([]*Tensor, len(st.in))
	for i, v := range st.in {
		if v != nil {
			st.In[i] = v.konst
		}
	}
	st.Out = make([]*Tensor, len(st.out))
	for i, v := range st.out {
		t := &Tensor{Shape: v.shape, DType: v.dtype}
		if v.dtype.IsFloat() {
			t.F = make([]float32, sizeOf(v.shape))
		} else {
			t.I = make([]int64, sizeOf(v.shape))
		}
		if a, ok := st.Op.(Aliaser); ok && i == 0 {
			src := st.In[a.AliasInput()]
			t.F, t.I = src.F, src.I
		}
		st.Out[i] = t
	}
	if err := st.Op.Forward(p.ctx, st.In, st.Out); err != nil {
		return err
	}
	for i, v := range st.out {
		v.konst, v.t = st.Out[i], st.Out[i]
	}
	return nil
}

// plan computes lifetimes, assigns arena offsets to float activations,
// allocates integer activations and wires every step's tensors.
func (p *Program) plan(keepAll bool) error {
	const forever = math.MaxInt32
	root := func(v *value) *value {
		for v.alias != nil {
			v = v.alias
		}
		return v
	}
	// aliases: view ops share their input's storage
	for _, st := range p.steps {
		if a, ok := st.Op.(Aliaser); ok {
			src := st.in[a.AliasInput()]
			if src != nil && src.konst == nil && src.dtype == st.out[0].dtype {
				st.out[0].alias = root(src)
			}
		}
	}
	for si, st := range p.steps {
		for _, v := range st.in {
			if v != nil && v.konst == nil && !v.param {
				r := root(v)
				r.lastUse = max(r.lastUse, si)
			}
		}
		for _, v := range st.out {
			r := root(v)
			r.lastUse = max(r.lastUse, si)
		}
	}
	keep := append(append([]*value(nil), p.outputs...), p.observed...)
	for _, v := range keep {
		if v.konst == nil && !v.param {
			root(v).lastUse = forever
		}
	}
	for _, v := range p.inputs {
		v.lastUse = max(v.lastUse, -1)
	}
	// float roots get arena slots; integer roots their own buffers
	var roots []*value
	for _, v := range p.values {
		if v.konst != nil || v.param || v.alias != nil {
			continue
		}
		if v.def < 0 && !v.input {
			continue
		}
		if keepAll {
			v.lastUse = forever
		}
		if v.dtype.IsFloat() {
			roots = append(roots, v)
		} else {
			v.t = &Tensor{Shape: v.shape, DType: v.dtype, I: make([]int64, sizeOf(v.shape))}
		}
	}
	sort.SliceStable(roots, func(i, j int) bool { return sizeOf(roots[i].shape) > sizeOf(roots[j].shape) })
	var placed []*value
	total := 0
	for _, v := range roots {
		n := sizeOf(v.shape)
		// candidate offsets: 0 and the end of every placed buffer whose
		// lifetime overlaps v's; take the lowest that fits.
		var busy [][2]int
		for _, q := range placed {
			if q.def <= v.lastUse && v.def <= q.lastUse {
				busy = append(busy, [2]int{q.offset, q.offset + sizeOf(q.shape)})
			}
		}
		off := lowestFit(busy, n)
		v.offset = off
		placed = append(placed, v)
		total = max(total, off+n)
	}
	if total > onnxio.MaxElements {
		return fmt.Errorf("activations need %d floats at once, over the %d limit; use a smaller batch", total, int64(onnxio.MaxElements))
	}
	// arenaGuard unused values on each side: the vector kernels' masked
	// loads may reach a vector beyond a tensor (discarding those lanes), and
	// must not touch another heap object (see kernels' zeroGuard).
	const arenaGuard = 64
	p.arena = make([]float32, total+2*arenaGuard)[arenaGuard : arenaGuard+total]
	p.peak = 4 * total
	for _, v := range roots {
		n := sizeOf(v.shape)
		v.t = &Tensor{Shape: v.shape, DType: v.dtype, F: p.arena[v.offset : v.offset+n : v.offset+n]}
	}
	for _, v := range p.values {
		if v.alias != nil {
			r := root(v)
			v.t = &Tensor{Shape: v.shape, DType: v.dtype, F: r.t.F, I: r.t.I}
		} else if v.t == nil && (v.input || v.def >= 0) {
			return fmt.Errorf("value %q has no storage", v.name)
		}
	}
	scratch := 0
	for _, st := range p.steps {
		st.In = make([]*Tensor, len(st.in))
		for i, v := range st.in {
			if v != nil {
				st.In[i] = v.t
			}
		}
		st.Out = make([]*Tensor, len(st.out))
		for i, v := range st.out {
			st.Out[i] = v.t
		}
		if s, ok := st.Op.(Scratcher); ok {
			scratch = max(scratch, s.ScratchFloats())
		}
	}
	p.ctx.Scratch(scratch)
	return nil
}

// Run copies the inputs in, executes the program and returns copies of the
// graph outputs and of the values named in Options.Outputs.
func (p *Program) Run(inputs map[string]*Tensor) (map[string]*Tensor, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.forward(inputs); err != nil {
		return nil, err
	}
	res := make(map[string]*Tensor, len(p.outputs)+len(p.observed))
	for _, v := range p.outputs {
		res[v.name] = v.t.Clone()
	}
	for _, v := range p.observed {
		res[v.name] = v.t.Clone()
	}
	return res, nil
}

// Forward copies the inputs in and executes the program without copying
// anything out; read results with Value until the next Forward or Run. It
// does not allocate.
func (p *Program) Forward(inputs map[string]*Tensor) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.forward(inputs)
}

// stepPanic turns a panic recovered while step cur (or, with cur < 0,
// no step yet) was running into an error that names the node and the
// stage ("run" or "backward").
func (p *Program) stepPanic(stage string, cur int, r any) error {
	if cur >= 0 {
		st := p.steps[cur]
		return fmt.Errorf("%s: node %d (%s %q): internal error: %v", stage, st.Index, st.Node.OpType, st.Node.Name, r)
	}
	return fmt.Errorf("%s: internal error: %v", stage, r)
}

func (p *Program) forward(inputs map[string]*Tensor) (err error) {
	cur := -1
	defer func() {
		// a kernel panic is a bug, but it must surface as an error naming
		// the node rather than crash the caller
		if r := recover(); r != nil {
			err = p.stepPanic("run", cur, r)
		}
	}()
	for _, v := range p.inputs {
		t := inputs[v.name]
		if t == nil {
			return fmt.Errorf("run: input %q is missing", v.name)
		}
		if !slices.Equal(t.Shape, v.shape) {
			return fmt.Errorf("run: input %q has shape %v; the program was compiled for %v", v.name, t.Shape, v.shape)
		}
		if t.DType.IsFloat() != v.dtype.IsFloat() {
			return fmt.Errorf("run: input %q is %s; the model wants %s", v.name, t.DType, v.dtype)
		}
		if err := t.check(); err != nil {
			return fmt.Errorf("run: input %q: %w", v.name, err)
		}
		if v.dtype.IsFloat() {
			copy(v.t.F, t.F)
		} else {
			copy(v.t.I, t.I)
		}
	}
	for i, st := range p.steps {
		cur = i
		if err := st.Op.Forward(p.ctx, st.In, st.Out); err != nil {
			return fmt.Errorf("run: node %d (%s %q): %w", st.Index, st.Node.OpType, st.Node.Name, err)
		}
	}
	return nil
}

// Value returns the current tensor of a named value (graph input, output,
// observed value, constant or parameter). Activations that are neither
// outputs nor observed may have been overwritten by later ops unless the
// program was compiled with KeepForBackward (otherwise they may also be
// stored channel-major, see layout.go). The tensor is a view: it is valid
// until the next Forward or Run.
func (p *Program) Value(name string) *Tensor {
	if v := p.byName[name]; v != nil {
		return v.t
	}
	return nil
}

// Param returns the storage of a trainable initializer (nil if name was not
// listed in Options.Trainable). Writing to it changes the model.
func (p *Program) Param(name string) *Tensor {
	if v := p.params[name]; v != nil {
		return v.t
	}
	return nil
}

// ParamNames returns the names of the trainable initializers, sorted.
func (p *Program) ParamNames() []string {
	var names []string
	for n := range p.params {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Steps returns the compiled steps in execution order (constant-folded
// nodes are absent). Each step's In and Out tensors are the buffers Forward
// uses.
func (p *Program) Steps() []*Step { return p.steps }

// Opset returns the ai.onnx opset version of the model.
func (p *Program) Opset() int { return p.opset }

// InputNames returns the graph inputs that Run needs, in graph order.
func (p *Program) InputNames() []string {
	var names []string
	for _, v := range p.inputs {
		names = append(names, v.name)
	}
	return names
}

// OutputNames returns the graph outputs, in graph order.
func (p *Program) OutputNames() []string {
	var names []string
	for _, v := range p.outputs {
		names = append(names, v.name)
	}
	return names
}

// InputShape returns the compiled shape of a graph input (nil if unknown).
func (p *Program) InputShape(name string) []int {
	if v := p.byName[name]; v != nil && v.input {
		return append([]int(nil), v.shape...)
	}
	return nil
}

// Shape returns the inferred shape of any named value (nil if unknown).
func (p *Program) Shape(name string) []int {
	if v := p.byName[name]; v != nil {
		return append([]int(nil), v.shape...)
	}
	return nil
}

// InputDType returns the element type of a graph input.
func (p *Program) InputDType(name string) DType {
	if v := p.byName[name]; v != nil {
		return v.dtype
	}
	return Float32
}

// PeakActivationBytes returns the planned size of the float activation
// arena: the most activation memory alive at once, in bytes.
func (p *Program) PeakActivationBytes() int { return p.peak }

// Close releases the program's worker threads.
func (p *Program) Close() {
	p.ctx.K.Close()
	p.ctx.pool.close()
}

// String summarizes the program.
func (p *Program) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "program: opset %d, %d steps, %d values, arena %d bytes\n", p.opset, len(p.steps), len(p.values), p.peak)
	return sb.String()
}

func sortStrings(s []string) { sort.Strings(s) }

// lowestFit returns the lowest offset at which n elements fit between the
// busy [start, end) ranges, sorting busy by start.
func lowestFit(busy [][2]int, n int) int {
	sort.Slice(busy, func(i, j int) bool { return busy[i][0] < busy[j][0] })
	off := 0
	for _, b := range busy {
		if off+n <= b[0] {
			break
		}
		off = max(off, b[1])
	}
	return off
}
