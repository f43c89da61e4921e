package finetune

import (
	"math"
	"sync"
	"sync/atomic"
)

// minParallelFloats is the least number of floats a step's per-tensor
// work (feature losses, optimizer updates) must touch for forEach to use
// more than one goroutine: below it, starting goroutines costs more than
// the work (a few microseconds against about 1e4 floats per microsecond).
const minParallelFloats = 1 << 15

// forEach runs f(i) for every i in [0, n) on up to workers goroutines, the
// caller's included, each claiming the next unclaimed index, and returns
// when all are done. Every f(i) must touch only its own data; results
// that f writes to slot i are the same whichever goroutine ran it, so a
// caller that combines them in index order gets the same bits as a loop.
//
// The fine-tuning step runs its per-tensor work through it (the feature
// terms of the loss, the optimizer updates), which would otherwise run on
// one core between the engine's parallel passes.
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
// enough that two workers share a step's few tensors evenly, large enough
// that claiming an item costs nothing beside its work.
const chunkFloats = 4096

// paramChunk is the elements [lo, hi) of trained tensor t.
type paramChunk struct{ t, lo, hi int }

// paramChunks cuts the trained tensors into chunks of at most chunkFloats
// elements, in tensor and element order, and returns them with a slot per
// chunk for its sum of squares.
func paramChunks(params [][]float32) ([]paramChunk, []float64) {
	var cs []paramChunk
	for t, p := range params {
		for lo := 0; lo < len(p); lo += chunkFloats {
			cs = append(cs, paramChunk{t, lo, min(lo+chunkFloats, len(p))})
		}
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
// when one of them is not finite). The tensors are updated in chunks
// (paramChunks), each chunk's sum of squares computed right after its
// update; every element's update is independent of the others and the
// sums are added in chunk order, so neither the parameters nor the norm
// depend on which goroutine ran which chunk.
func (r *trainer) update(lr float64) float64 {
	r.opt.begin()
	for i, name := range r.names {
		r.grads[i] = r.sp.Grad(name)
	}
	r.parallel(len(r.chunks), r.rep.Params, func(c int) {
		ch := r.chunks[c]
		p := r.params[ch.t][ch.lo:ch.hi]
		r.opt.updateRange(r.names[ch.t], ch.lo, p, r.grads[ch.t][ch.lo:ch.hi], lr)
		r.sq[c] = sumSquares(p)
	})
	return r.norm()
}

// paramNorm returns the L2 norm of the trained parameters as update
// computes it.
func (r *trainer) paramNorm() float64 {
	for c, ch := range r.chunks {
		r.sq[c] = sumSquares(r.params[ch.t][ch.lo:ch.hi])
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
