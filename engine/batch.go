package engine

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Batched runs a graph on a batch with batch-level parallelism: the batch
// of B images is cut into K contiguous slices, images [lo_k, lo_{k+1}) with
// lo_k = k*B/K, each with its own Program compiled for its images, and W
// long-lived goroutines (W <= K) run the slices, worker g those of its
// block [g*K/W, (g+1)*K/W) in every phase, so that a slice's activations
// and gradients stay in the cache of the core that computed them, and
// then any slice of another block not yet started (see claim). For inference K is
// a multiple of W chosen so that a slice's activations fit in about one
// core's L2 cache (see slicesFor), so even one thread may run a batch as
// several slices, one after the other, which is faster than one large
// batch whose activations spill to L3; in training K = W. Each slice keeps its own
// activation arena, scratch, integer activations and (in training)
// gradient arena and parameter gradients, so any goroutine can run the
// forward or backward pass of any slice; all slices read the same weight
// tensors: initializers (trainable ones included, so an optimizer's
// in-place update reaches every slice) and folded BatchNormalization
// weights are shared, not copied. Values folded from shapes are per slice
// (they may depend on the slice size). Which goroutine ran a slice changes
// no result: outputs are those of the slice's program, and gradients are
// summed in slice order (see Backward).
//
// With W = 1 and K = 1 a Batched is one Program with Options.Threads
// threads (the op-level split of package engine) and gives the same bits
// as that Program; a Program kept for backward (Options.KeepForBackward) is
// never cut at W = 1, so one-thread training sums gradients as before. CompileBatched chooses W with a cost model (see chooseWorkers):
// batch-level splitting when the batch has at least as many images as
// threads, op-level splitting when it has too few images (a batch of one
// cannot be cut) or too few for the slices to balance. Each slice's
// program gets Threads/W threads for op-level splitting inside the slice.
//
// Memory: the arenas of K slices of B/K images hold as many floats as one
// arena at B images, so activations (and, in training, activation
// gradients) do not grow with the number of workers. What grows is per
// slice: one scratch buffer (the largest im2col or packing
// buffer of one op, a few images' worth) and the kernels' per-thread
// packing buffers; once: the gathered copies of the outputs (B times the
// output size); and in training one gradient buffer per trainable tensor
// and slice (K*P floats for P trainable parameters).
//
// The hot path takes no shared lock and allocates nothing: workers are
// long-lived goroutines that poll for their next phase and are woken
// through their own channels once they have stopped polling (see team),
// slices are claimed with one atomic flag each, each slice writes only its own rows of the gathered
// outputs, and the gradient reduction splits the parameters, not the
// slices, across goroutines (see Backward).
//
// The model must treat images independently along the first dimension of
// its inputs and outputs (every CNN classifier does; a graph that mixes
// images, for example a Reshape with a fixed batch, fails to compile at the
// slice size or yields an output whose first dimension is not the slice,
// and then CompileBatched falls back to one op-level Program).
//
// A Batched serializes calls to Forward, Backward, Run and Parallel.
type Batched struct {
	mu      sync.Mutex
	batch   int
	slices  []*batchSlice
	workers int                // goroutines W that run the slices
	outs    map[string]*Tensor // gathered outputs and observed values (W > 1)
	params  []string
	reduce  [][2]int // per worker: its element range of the flat parameter list (training)
	team    *team    // shared with other programs after ShareWorkers
	// teamCleanup releases team when the Batched becomes unreachable
	// without Close.
	teamCleanup runtime.Cleanup
	err         []error
	// taken flags the slices (or Parallel items) claimed in the current
	// phase.
	taken []atomic.Int32
	// fn and fnN are the items of the Parallel call in progress.
	fn  func(i int)
	fnN int
}

// batchSlice is one worker's program and the views of its slice.
type batchSlice struct {
	p      *Program
	lo, n  int                // first image and number of images of the slice
	in     map[string]*Tensor // views of the caller's inputs (reused)
	dOut   map[string]*Tensor // views of the caller's output gradients (reused)
	src    map[string]*Tensor // the inputs of the current Forward (= in)
	dView  map[string]*Tensor // persistent views behind dOut
	pgrad  [][]float32        // gradients of the trainable tensors, in params order
	gather []gatherView       // outputs copied to the full-batch buffers
}

// gatherView copies one value of a worker into its rows of a full-batch
// buffer.
type gatherView struct {
	from, to []float32
}

// CompileBatched compiles m for the input shapes in opts (their first
// dimension is the batch) and chooses between batch-level and op-level
// splitting for opts.Threads threads (0: runtime.NumCPU()). workers > 0
// forces that many batch slices (at most the batch), mainly for tests;
// workers = 0 chooses by cost. Options other than Threads apply to every
// worker's Program.
func CompileBatched(m *onnxpb.ModelProto, opts Options, workers int) (*Batched, error) {
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	batch, shapes, err := batchOf(m, opts)
	if err != nil {
		return nil, err
	}
	slices := 1
	if batch > 1 {
		if probe := probeOne(m, opts, shapes); probe != nil {
			if workers <= 0 {
				workers = chooseWorkers(probe, batch, threads)
			}
			workers = max(1, min(workers, batch))
			slices = slicesFor(batch, workers, probe.peak, opts.KeepForBackward)
			probe.Close()
		}
	}
	workers = max(1, min(workers, batch))
	if slices > 1 {
		b, err := compileWorkers(m, opts, batch, shapes, slices, workers, threads)
		if err == nil {
			return b, nil
		}
		var fb *fallbackError
		if !errors.As(err, &fb) {
			return nil, err
		}
	}
	opts.Threads = threads
	p, err := Compile(m, opts)
	if err != nil {
		return nil, err
	}
	b := &Batched{batch: batch, slices: []*batchSlice{{p: p, n: batch}}, params: p.ParamNames(), workers: 1}
	b.err = make([]error, 1)
	b.useTeam(newTeam(1))
	return b, nil
}

// fallbackError says that the graph cannot be cut along the batch.
type fallbackError struct{ err error }

func (e *fallbackError) Error() string { return e.err.Error() }

// batchOf returns the batch (the common first dimension of the non-constant
// graph inputs) and the input shapes.
func batchOf(m *onnxpb.ModelProto, opts Options) (int, map[string][]int, error) {
	if m == nil || m.Graph == nil {
		return 0, nil, errors.New("compile: model has no graph")
	}
	inits := map[string]bool{}
	for _, t := range m.Graph.Initializer {
		inits[t.GetName()] = true
	}
	batch := 0
	shapes := map[string][]int{}
	for _, in := range m.Graph.Input {
		if inits[in.Name] || opts.ConstantInputs[in.Name] != nil {
			continue
		}
		s, _, err := inputShape(in, opts.InputShapes)
		if err != nil {
			return 0, nil, fmt.Errorf("compile: %w", err)
		}
		if len(s) == 0 || (batch != 0 && s[0] != batch) {
			return 1, nil, nil // no common batch dimension: op-level only
		}
		batch = s[0]
		shapes[in.Name] = s
	}
	return max(batch, 1), shapes, nil
}

// compileWorkers compiles the per-worker programs; a graph that cannot be
// cut along the batch returns a *fallbackError.
func compileWorkers(m *onnxpb.ModelProto, opts Options, batch int, shapes map[string][]int, slices, workers, threads int) (*Batched, error) {
	b := &Batched{batch: batch, outs: map[string]*Tensor{}, workers: workers}
	var first *Program
	for k := range slices {
		lo, hi := k*batch/slices, (k+1)*batch/slices
		o := opts
		o.Threads = max(1, threads/workers)
		o.InputShapes = map[string][]int{}
		for name, s := range shapes {
			o.InputShapes[name] = append([]int{hi - lo}, s[1:]...)
		}
		p, err := compile(m, o, first)
		if err != nil {
			b.closeWorkers()
			return nil, &fallbackError{err}
		}
		if first == nil {
			first = p
		}
		w := &batchSlice{p: p, lo: lo, n: hi - lo, in: map[string]*Tensor{}, dOut: map[string]*Tensor{}, dView: map[string]*Tensor{}}
		b.slices = append(b.slices, w)
	}
	// outputs and observed values must be cut along the first dimension
	for _, v := range append(append([]*value(nil), first.outputs...), first.observed...) {
		if _, ok := b.outs[v.name]; ok {
			continue
		}
		per := 0
		for _, w := range b.slices {
			s := w.p.byName[v.name].shape
			if len(s) == 0 || s[0] != w.n || !v.dtype.IsFloat() {
				b.closeWorkers()
				return nil, &fallbackError{fmt.Errorf("compile: output %q is not cut along the batch", v.name)}
			}
			per = sizeOf(s) / max(w.n, 1)
		}
		full := &Tensor{Shape: append([]int{batch}, v.shape[1:]...), DType: v.dtype, F: make([]float32, batch*per)}
		b.outs[v.name] = full
		for _, w := range b.slices {
			w.gather = append(w.gather, gatherView{from: w.p.byName[v.name].t.F, to: full.F[w.lo*per : (w.lo+w.n)*per]})
		}
	}
	b.params = first.ParamNames()
	b.err = make([]error, slices)
	b.taken = make([]atomic.Int32, slices)
	b.useTeam(newTeam(workers))
	return b, nil
}

func (b *Batched) closeWorkers() {
	for _, w := range b.slices {
		w.p.Close()
	}
}

// Close stops the workers and releases their threads.
func (b *Batched) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.team != nil {
		b.teamCleanup.Stop()
		b.team.release()
		b.team = nil
	}
	b.closeWorkers()
}

// Workers returns the number of goroutines that run batch slices (1:
// op-level splitting only).
func (b *Batched) Workers() int { return max(1, b.workers) }

// Slices returns the number of batch slices (at least Workers).
func (b *Batched) Slices() int { return len(b.slices) }

// Batch returns the batch size the program was compiled for.
func (b *Batched) Batch() int { return b.batch }

// Program returns slice k's program (compiled for its images).
func (b *Batched) Program(k int) *Program { return b.slices[k].p }

// PeakActivationBytes returns the activation arenas of all workers
// together, in bytes.
func (b *Batched) PeakActivationBytes() int {
	n := 0
	for _, w := range b.slices {
		n += w.p.peak
	}
	return n
}

// ParamNames returns the names of the trainable initializers, sorted.
func (b *Batched) ParamNames() []string { return append([]string(nil), b.params...) }

// Param returns the storage of a trainable initializer, shared by every
// worker (nil if name is not trainable). Writing to it changes the model.
func (b *Batched) Param(name string) *Tensor { return b.slices[0].p.Param(name) }

// Forward runs the program on the full batch (inputs keyed by graph input
// name, each with the compiled shape), each worker on its slice; read the
// outputs with Value. It does not allocate.
func (b *Batched) Forward(inputs map[string]*Tensor) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.forward(inputs)
}

func (b *Batched) forward(inputs map[string]*Tensor) error {
	if len(b.slices) == 1 {
		return b.slices[0].p.forward(inputs)
	}
	for _, w := range b.slices {
		for _, v := range w.p.inputs {
			t := inputs[v.name]
			if t == nil {
				return fmt.Errorf("run: input %q is missing", v.name)
			}
			per := sizeOf(v.shape) / max(w.n, 1)
			if len(t.Shape) == 0 || t.Shape[0] != b.batch || len(t.F)+len(t.I) != b.batch*per {
				return fmt.Errorf("run: input %q has shape %v; the program was compiled for batch %d of %v", v.name, t.Shape, b.batch, v.shape[1:])
			}
			view := w.in[v.name]
			if view == nil {
				view = &Tensor{Shape: v.shape}
				w.in[v.name] = view
			}
			view.DType, view.F, view.I = t.DType, nil, nil
			if t.F != nil {
				view.F = t.F[w.lo*per : (w.lo+w.n)*per]
			} else {
				view.I = t.I[w.lo*per : (w.lo+w.n)*per]
			}
		}
		w.src = w.in
	}
	return b.do(phaseForward)
}

// Run is Forward followed by copies of the outputs and observed values.
func (b *Batched) Run(inputs map[string]*Tensor) (map[string]*Tensor, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.forward(inputs); err != nil {
		return nil, err
	}
	p := b.slices[0].p
	res := map[string]*Tensor{}
	for _, v := range append(append([]*value(nil), p.outputs...), p.observed...) {
		res[v.name] = b.value(v.name).Clone()
	}
	return res, nil
}

// Value returns, after Forward, the full-batch tensor of a graph output or
// a value named in Options.Outputs, or the tensor of a parameter or
// constant. With more than one worker, other activations are per slice
// and Value returns nil for them (read them from Program(k)). The tensor is
// a view valid until the next Forward.
func (b *Batched) Value(name string) *Tensor {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.value(name)
}

func (b *Batched) value(name string) *Tensor {
	if t := b.outs[name]; t != nil {
		return t
	}
	p := b.slices[0].p
	v := p.byName[name]
	if v == nil {
		return nil
	}
	if len(b.slices) > 1 && v.konst == nil && !v.param {
		return nil
	}
	return v.t
}

// OutputNames returns the graph outputs, in graph order.
func (b *Batched) OutputNames() []string { return b.slices[0].p.OutputNames() }

// InputNames returns the graph inputs that Forward needs, in graph order.
func (b *Batched) InputNames() []string { return b.slices[0].p.InputNames() }
