package engine

import (
	"fmt"
	"math"
	"sort"
)

// Every op type that Compile can produce has a backward pass.
var (
	_ Backwarder = (*ConvOp)(nil)
	_ Backwarder = (*BatchNormOp)(nil)
	_ Backwarder = (*PoolOp)(nil)
	_ Backwarder = (*GlobalPoolOp)(nil)
	_ Backwarder = (*UnaryOp)(nil)
	_ Backwarder = (*BinaryOp)(nil)
	_ Backwarder = (*GemmOp)(nil)
	_ Backwarder = (*MatMulOp)(nil)
	_ Backwarder = (*SoftmaxOp)(nil)
	_ Backwarder = (*ReduceOp)(nil)
	_ Backwarder = ViewOp{}
	_ Backwarder = (*TransposeOp)(nil)
	_ Backwarder = (*ConcatOp)(nil)
	_ Backwarder = (*SplitOp)(nil)
	_ Backwarder = (*SliceOp)(nil)
	_ Backwarder = (*GatherOp)(nil)
	_ Backwarder = (*CastOp)(nil)
)

// overwriter is implemented by ops whose backward can write some input
// gradients outright instead of adding to them. When an input's gradient
// has not been written yet in the pass, the driver then skips zeroing it
// and sets fresh[i]; the op must write every element of such a dIn[i].
type overwriter interface {
	// overwrites reports whether input i's gradient can be written outright.
	overwrites(i int) bool
	backwardFresh(c *Ctx, in, out, dOut, dIn []*Tensor, fresh []bool) error
}

// isFresh reports whether dIn[i] must be overwritten (see overwriter).
func isFresh(fresh []bool, i int) bool { return i < len(fresh) && fresh[i] }

// gradState is the backward state of a Program: which values receive a
// gradient, where each gradient lives, and the per-step argument slices
// handed to Backwarder.Backward. It is built on the first Backward (or
// rebuilt after RequireInputGrad) and reused by every later pass.
type gradState struct {
	inputs  map[string]bool // graph inputs whose gradients are wanted
	built   bool
	grad    []*Tensor // by value id: gradient storage (nil: no gradient flows)
	root    []int     // by value id: id of the value owning the gradient storage
	touched []bool    // by root id: written in this pass (zeroed on first write)
	fixed   []*Tensor // gradients zeroed at the start of each pass (params, inputs)
	fixedID []int
	arena   []float32
	active  []bool // by step: some input receives a gradient
	dIn     [][]*Tensor
	dOut    [][]*Tensor
	fresh   [][]bool // by step and input: dIn written outright (overwriter)
	seeds   []bool   // by value id: graph output or observed value
}

// RequireInputGrad asks later Backward passes to also compute the gradients
// of the named graph inputs (readable with Grad). By default only the
// trainable initializers get gradients, and no work is spent on the
// gradients of graph inputs.
func (p *Program) RequireInputGrad(names ...string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[string]bool{}
	if p.grads != nil {
		for n := range p.grads.inputs {
			want[n] = true
		}
	}
	for _, n := range names {
		v := p.byName[n]
		if v == nil || !v.input {
			return fmt.Errorf("require input grad: %q is not a graph input of the program", n)
		}
		if !v.dtype.IsFloat() {
			return fmt.Errorf("require input grad: input %q is %s, not float", n, v.dtype)
		}
		want[n] = true
	}
	p.grads = &gradState{inputs: want}
	return nil
}

// Backward propagates the gradients dOutputs (keyed by graph output or
// Options.Outputs value name, each with that value's shape) back through
// the values computed by the last Forward or Run, and leaves the gradient
// of the loss with respect to every trainable initializer (and every input
// named in RequireInputGrad) in Grad. Gradients are those of one pass:
// they are zeroed at the start of every call. Several seeds add up.
//
// The program must have been compiled with Options.KeepForBackward (so
// that every activation of the forward pass is still available). Work is
// spent only where a gradient flows toward a trainable tensor or a
// requested input. Steady-state calls do not allocate.
func (p *Program) Backward(dOutputs map[string]*Tensor) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.buildGrads(); err != nil {
		return err
	}
	return p.backward(dOutputs)
}

// Grad returns the gradient computed by the last Backward for a trainable
// initializer or for a graph input named in RequireInputGrad (nil for any
// other name, or before the first Backward). The slice is the program's
// storage, overwritten by the next Backward; it has the value's shape.
func (p *Program) Grad(name string) []float32 {
	t := p.GradTensor(name)
	if t == nil {
		return nil
	}
	return t.F
}

// GradTensor is Grad with the value's shape.
func (p *Program) GradTensor(name string) *Tensor {
	p.mu.Lock()
	defer p.mu.Unlock()
	gs := p.grads
	v := p.byName[name]
	if gs == nil || !gs.built || v == nil || !(v.param || (v.input && gs.inputs[name])) {
		return nil
	}
	return gs.grad[v.id]
}

// keptForBackward reports whether every float activation stays alive to
// the end of the program, as Options.KeepForBackward makes it.
func (p *Program) keptForBackward() bool {
	for _, v := range p.values {
		if v.konst != nil || v.param || v.alias != nil || v.def < 0 || !v.dtype.IsFloat() {
			continue
		}
		if v.lastUse != math.MaxInt32 {
			return false
		}
	}
	return true
}

// buildGrads decides which values receive gradients and places their
// storage: trainable initializers and requested inputs get their own
// buffers, every other gradient a slot in one arena that gradients with
// disjoint lifetimes share (the gradient of a value is written by the
// backward of its readers and consumed by the backward of its producer).
func (p *Program) buildGrads() error {
	if p.grads == nil {
		p.grads = &gradState{inputs: map[string]bool{}}
	}
	gs := p.grads
	if gs.built {
		return nil
	}
	if !p.keptForBackward() {
		return fmt.Errorf("backward: the program was compiled without Options.KeepForBackward, so the forward activations are not kept")
	}
	nv := len(p.values)
	need := make([]bool, nv)
	for _, v := range p.values {
		if v.param || (v.input && gs.inputs[v.name]) {
			need[v.id] = true
		}
	}
	gs.active = make([]bool, len(p.steps))
	for si, st := range p.steps {
		for _, v := range st.in {
			if v != nil && need[v.id] {
				gs.active[si] = true
			}
		}
		if gs.active[si] {
			for _, v := range st.out {
				if v.dtype.IsFloat() {
					need[v.id] = true
				}
			}
		}
	}
	gs.root = make([]int, nv)
	for _, v := range p.values {
		gs.root[v.id] = v.id
		if v.alias != nil {
			gs.root[v.id] = v.alias.id
		}
	}
	gs.seeds = make([]bool, nv)
	for _, v := range append(append([]*value(nil), p.outputs...), p.observed...) {
		gs.seeds[v.id] = true
	}
	// lifetimes of arena roots, in forward step indices
	const forever = math.MaxInt32
	first := make([]int, nv)
	last := make([]int, nv)
	for i := range first {
		first[i], last[i] = forever, -1
	}
	for si, st := range p.steps {
		for _, v := range st.out {
			if need[v.id] {
				r := gs.root[v.id]
				first[r] = min(first[r], si)
				last[r] = max(last[r], si)
			}
		}
		for _, v := range st.in {
			if v != nil && need[v.id] {
				r := gs.root[v.id]
				last[r] = max(last[r], si)
			}
		}
	}
	for _, v := range p.values {
		if need[v.id] && gs.seeds[v.id] {
			last[gs.root[v.id]] = forever
		}
	}
	gs.grad = make([]*Tensor, nv)
	gs.touched = make([]bool, nv)
	gs.fixed, gs.fixedID = nil, nil
	var roots []*value
	for _, v := range p.values {
		if !need[v.id] || gs.root[v.id] != v.id {
			continue
		}
		if v.param || v.input {
			t := &Tensor{Shape: v.shape, F: make([]float32, sizeOf(v.shape))}
			gs.grad[v.id] = t
			gs.fixed = append(gs.fixed, t)
			gs.fixedID = append(gs.fixedID, v.id)
			continue
		}
		if first[v.id] == forever {
			return fmt.Errorf("backward: internal error: value %q needs a gradient but no step produces it", v.name)
		}
		roots = append(roots, v)
	}
	// largest first; each at the lowest offset free over its lifetime
	sort.SliceStable(roots, func(i, j int) bool { return sizeOf(roots[i].shape) > sizeOf(roots[j].shape) })
	offset := make([]int, nv)
	var placed []*value
	total := 0
	var busy [][2]int
	for _, v := range roots {
		n := sizeOf(v.shape)
		busy = busy[:0]
		for _, q := range placed {
			if first[q.id] <= last[v.id] && first[v.id] <= last[q.id] {
				busy = append(busy, [2]int{offset[q.id], offset[q.id] + sizeOf(q.shape)})
			}
		}
		off := lowestFit(busy, n)
		offset[v.id] = off
		placed = append(placed, v)
		total = max(total, off+n)
	}
	gs.arena = make([]float32, total)
	for _, v := range roots {
		n := sizeOf(v.shape)
		gs.grad[v.id] = &Tensor{Shape: v.shape, F: gs.arena[offset[v.id] : offset[v.id]+n : offset[v.id]+n]}
	}
	for _, v := range p.values {
		if need[v.id] && gs.root[v.id] != v.id {
			r := gs.grad[gs.root[v.id]]
			if r == nil {
				return fmt.Errorf("backward: internal error: view %q has no gradient root", v.name)
			}
			gs.grad[v.id] = &Tensor{Shape: v.shape, F: r.F}
		}
	}
	gs.dIn = make([][]*Tensor, len(p.steps))
	gs.dOut = make([][]*Tensor, len(p.steps))
	gs.fresh = make([][]bool, len(p.steps))
	for si, st := range p.steps {
		gs.dIn[si] = make([]*Tensor, len(st.in))
		gs.dOut[si] = make([]*Tensor, len(st.out))
		gs.fresh[si] = make([]bool, len(st.in))
	}
	gs.built = true
	return nil
}

// GradArenaBytes returns the size of the planned gradient arena (the
// gradients of activations; parameter gradients are extra), in bytes, or
// 0 before the first Backward.
func (p *Program) GradArenaBytes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.grads == nil {
		return 0
	}
	return 4 * len(p.grads.arena)
}

// touch returns the gradient tensor of value id, zeroing its storage on
// the first write of the pass.
func (gs *gradState) touch(id int) *Tensor {
	r := gs.root[id]
	if !gs.touched[r] {
		clear(gs.grad[r].F)
		gs.touched[r] = true
	}
	return gs.grad[id]
}

// soleUser reports whether no other input or output of st shares the
// gradient storage of input i, so that the op may overwrite it.
func (gs *gradState) soleUser(st *Step, i int) bool {
	r := gs.root[st.in[i].id]
	for j, v := range st.in {
		if j != i && v != nil && gs.grad[v.id] != nil && gs.root[v.id] == r {
			return false
		}
	}
	for _, v := range st.out {
		if gs.grad[v.id] != nil && gs.root[v.id] == r {
			return false
		}
	}
	return true
}

func (p *Program) backward(dOutputs map[string]*Tensor) (err error) {
	gs := p.grads
	cur := -1
	defer func() {
		if r := recover(); r != nil {
			err = p.stepPanic("backward", cur, r)
		}
	}()
	clear(gs.touched)
	for i, t := range gs.fixed {
		clear(t.F)
		gs.touched[gs.fixedID[i]] = true
	}
	for name, t := range dOutputs {
		v := p.byName[name]
		if v == nil || !gs.seeds[v.id] {
			return fmt.Errorf("backward: %q is not a graph output or a value named in Options.Outputs", name)
		}
		if !v.dtype.IsFloat() {
			return fmt.Errorf("backward: %q is %s; gradients flow through float values only", name, v.dtype)
		}
		if t == nil || len(t.F) != sizeOf(v.shape) {
			return fmt.Errorf("backward: gradient of %q must hold %d floats (shape %v)", name, sizeOf(v.shape), v.shape)
		}
		if gs.grad[v.id] == nil {
			continue // the value depends on no trainable tensor
		}
		g := gs.touch(v.id).F
		for i, x := range t.F {
			g[i] += x
		}
	}
	for si := len(p.steps) - 1; si >= 0; si-- {
		if !gs.active[si] {
			continue
		}
		st := p.steps[si]
		dOut := gs.dOut[si]
		flows := false
		for j, v := range st.out {
			dOut[j] = nil
			if g := gs.grad[v.id]; g != nil && gs.touched[gs.root[v.id]] {
				dOut[j] = g
				flows = true
			}
		}
		if !flows {
			continue
		}
		bw, ok := st.Op.(Backwarder)
		if !ok {
			return fmt.Errorf("backward: node %d (%s %q): the operator has no backward pass", st.Index, st.Node.OpType, st.Node.Name)
		}
		ow, canOverwrite := st.Op.(overwriter)
		dIn, fresh := gs.dIn[si], gs.fresh[si]
		for i, v := range st.in {
			dIn[i], fresh[i] = nil, false
			if v == nil || gs.grad[v.id] == nil {
				continue
			}
			if r := gs.root[v.id]; canOverwrite && !gs.touched[r] && ow.overwrites(i) && gs.soleUser(st, i) {
				gs.touched[r], fresh[i] = true, true
				dIn[i] = gs.grad[v.id]
				continue
			}
			dIn[i] = gs.touch(v.id)
		}
		cur = si
		var err error
		if canOverwrite {
			err = ow.backwardFresh(p.ctx, st.In, st.Out, dOut, dIn, fresh)
		} else {
			err = bw.Backward(p.ctx, st.In, st.Out, dOut, dIn)
		}
		if err != nil {
			return fmt.Errorf("backward: node %d (%s %q): %w", st.Index, st.Node.OpType, st.Node.Name, err)
		}
		cur = -1
	}
	return nil
}
