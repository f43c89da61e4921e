package finetune

import (
	"math"
	"sync"
	"sync/atomic"
)

// minParallelFloats is the least number of floats a step's per-item
// work (feature losses, optimizer updates) must touch for it to use
// more than one goroutine: below it, starting goroutines costs more than
// the work (a few microseconds against about 1e4 floats per microsecond).
const minParallelFloats = 1 << 15

// forEach runs f(i) for every i in [0, n) on up to workers goroutines, the
// caller's included, each claiming the next unclaimed index, and returns
// when all are done. Every f(i) must touch only its own data; results
// that f writes to slot i are the same whichever goroutine ran it, so a
// caller that combines them in index order gets the same bits as a loop.
//
// The fine-tuning step runs its per-item work (the feature terms of the
// loss, the optimizer update) through it when the student runs on one
// batch worker (op-level threads only); with several, the workers run it
// (see trainer.parallel).
func forEach(workers, n int, f func(i int)) {
	workers = min(workers, n)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1)) - 1
			if i >= n {
				return
			}
			f(i)
		}
	}
	var wg sync.WaitGroup
	wg.Add(workers - 1)
	for range workers - 1 {
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}

// chunkFloats is the size of the work items of an optimizer update: small
// enough that the workers share a step's parameters evenly, large enough
// that an item's bookkeeping costs nothing beside its work.
const chunkFloats = 4096

// paramChunk is a work item of an update: chunk c of the trained
// parameters laid end to end (in names order), the elements [c*chunkFloats,
// (c+1)*chunkFloats) of that list, as segments of one tensor each.
type paramChunk []paramSegment

// paramSegment is the elements [lo, hi) of trained tensor t.
type paramSegment struct{ t, lo, hi int }

// paramChunks cuts the trained parameters, laid end to end, into chunks
// of chunkFloats elements (the last may be shorter), and returns them with
// a slot per chunk for its sum of squares. Chunks of equal size let
// Parallel's equal blocks of chunks give the workers equal work, and the
// worker that reduced a range of the gradients (engine.Batched.Backward
// splits them the same way) updates about the same range.
func paramChunks(params [][]float32) ([]paramChunk, []float64) {
	var cs []paramChunk
	var cur paramChunk
	n := 0
	for t, p := range params {
		for lo := 0; lo < len(p); {
			hi := min(len(p), lo+chunkFloats-n)
			cur = append(cur, paramSegment{t, lo, hi})
			n += hi - lo
			lo = hi
			if n == chunkFloats {
				cs, cur, n = append(cs, cur), nil, 0
			}
		}
	}
	if n > 0 {
		cs = append(cs, cur)
	}
	return cs, make([]float64, len(cs))
}

// parallel runs f(i) for i in [0, n), items that together touch floats
// values: on the student's worker goroutines when it has several (they
// are awake between the passes), else on up to r.workers goroutines, and
// on the caller's alone when there is too little work to share.
func (r *trainer) parallel(n, floats int, f func(i int)) {
	switch {
	case floats < minParallelFloats:
		forEach(1, n, f)
	case r.sp.Workers() > 1:
		r.sp.Parallel(n, f)
	default:
		forEach(r.workers, n, f)
	}
}

// update applies one optimizer step at rate lr to every trained tensor
// and returns the L2 norm of the trained parameters after it (NaN or +Inf
// when one of them is not finite). The parameters are updated in chunks
// (paramChunks), each chunk's sum of squares computed right after its
// update; every element's update is independent of the others and the
// sums are added in chunk order, so neither the parameters nor the norm
// depend on which goroutine ran which chunk, or on the number of workers.
func (r *trainer) update(lr float64) float64 {
	r.opt.begin()
	if r.anchors != nil && r.spGrads == nil {
		r.spGrads = make([][]float32, len(r.names))
	}
	for i, name := range r.names {
		r.grads[i] = r.sp.Grad(name)
		if r.anchors != nil && len(r.spGrads[i]) != len(r.grads[i]) {
			r.spGrads[i] = make([]float32, len(r.grads[i]))
		}
	}
	r.parallel(len(r.chunks), r.rep.Params, func(c int) {
		s := 0.0
		for _, sg := range r.chunks[c] {
			p := r.params[sg.t][sg.lo:sg.hi]
			g := r.grads[sg.t][sg.lo:sg.hi]
			if r.anchors != nil {
				out := r.spGrads[sg.t][sg.lo:sg.hi]
				l2sp(r.opts.L2SP, p, r.anchors[sg.t][sg.lo:sg.hi], g, out)
				g = out
			}
			tlr := lr
			if r.lrScale != nil {
				tlr *= r.lrScale[sg.t]
			}
			r.opt.updateRange(r.names[sg.t], sg.lo, p, g, tlr)
			s += sumSquares(p)
		}
		r.sq[c] = s
	})
	return r.norm()
}

// paramNorm returns the L2 norm of the trained parameters as update
// computes it.
func (r *trainer) paramNorm() float64 {
	for c, ch := range r.chunks {
		r.sq[c] = 0
		for _, sg := range ch {
			r.sq[c] += sumSquares(r.params[sg.t][sg.lo:sg.hi])
		}
	}
	return r.norm()
}

// norm adds the chunks' sums of squares in chunk order.
func (r *trainer) norm() float64 {
	s := 0.0
	for _, v := range r.sq {
		s += v
	}
	return math.Sqrt(s)
}

// sumSquares returns Σ p², accumulated in float64 in element order.
func sumSquares(p []float32) float64 {
	s := 0.0
	for _, v := range p {
		s += float64(v) * float64(v)
	}
	return s
}
