package engine

import (
	"fmt"
)

// work runs goroutine g's part of a phase: the reduction of its range of
// parameters, or its block of the slices (or Parallel items) and then any
// of the others' that are still unclaimed (see claim). Which goroutine
// runs which slice does not change any result.
func (b *Batched) work(g, phase int) {
	if phase == phaseFunc {
		b.claim(g, b.fnN, b.fn)
		return
	}
	if phase == phaseReduce {
		b.reduceRange(g)
		return
	}
	b.claim(g, len(b.slices), func(k int) {
		b.runPhase(k, phase)
	})
}

// runPhase runs the forward or backward phase of slice k, recording its
// error.
func (b *Batched) runPhase(k, phase int) {
	w := b.slices[k]
	var err error
	switch phase {
	case phaseForward:
		if err = w.p.forward(w.src); err == nil {
			for _, g := range w.gather {
				copy(g.to, g.from)
			}
		}
	case phaseBackward:
		err = w.p.backward(w.dOut)
	}
	if err != nil && len(b.slices) > 1 {
		err = fmt.Errorf("batch slice %d (images %d to %d): %w", k, w.lo, w.lo+w.n-1, err)
	}
	b.err[k] = err
}

// Backward propagates dOutputs, the gradients of the full-batch loss with
// respect to graph outputs or observed values (each with its full-batch
// shape), back through the last Forward, and leaves the gradient of every
// trainable initializer in Grad.
//
// The backward pass of every slice runs with the rows of dOutputs of its
// images (on worker k mod W), giving the parameter gradient
// g_k of slice k. A loss that is a mean over the batch already carries its
// 1/B in dOutputs, so the slices are weighted correctly and
//
//	grad = g_0 + g_1 + ... + g_{K-1}
//
// is the gradient of the full-batch loss. The sum is taken in that fixed
// order for every element, so the result is deterministic for a given
// number of slices (a function of the batch and the thread count); it
// equals the one-thread gradient up to float32 reassociation of the sum
// over images. The reduction is split by parameter element: worker g of W
// sums elements [g*P/W, (g+1)*P/W) of the P trainable parameters over all
// K slices into slice 0's buffers, so each worker reads K*P/W floats and
// writes P/W: the reduction's wall time is about (K/W)*P reads (memory
// bound), whatever W (in training K = W, so that is P reads). Input gradients (RequireInputGrad) are not
// available through a Batched.
func (b *Batched) Backward(dOutputs map[string]*Tensor) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.slices) == 1 {
		p := b.slices[0].p
		if err := p.buildGrads(); err != nil {
			return err
		}
		return p.backward(dOutputs)
	}
	if err := b.buildGrads(); err != nil {
		return err
	}
	for _, w := range b.slices {
		clear(w.dOut)
		for name, t := range dOutputs {
			v := w.p.byName[name]
			if v == nil || b.outs[name] == nil {
				return fmt.Errorf("backward: %q is not a graph output or a value named in Options.Outputs", name)
			}
			per := sizeOf(v.shape) / max(w.n, 1)
			if t == nil || len(t.F) != b.batch*per {
				return fmt.Errorf("backward: gradient of %q must hold %d floats (shape %v)", name, b.batch*per, b.outs[name].Shape)
			}
			view := w.dView[name]
			if view == nil {
				view = &Tensor{Shape: v.shape}
				w.dView[name] = view
			}
			view.F = t.F[w.lo*per : (w.lo+w.n)*per]
			w.dOut[name] = view
		}
	}
	if err := b.do(phaseBackward); err != nil {
		return err
	}
	return b.do(phaseReduce)
}

// buildGrads plans every slice's gradients and the reduction ranges.
func (b *Batched) buildGrads() error {
	if b.reduce != nil {
		return nil
	}
	total := 0
	for _, w := range b.slices {
		if err := w.p.buildGrads(); err != nil {
			return err
		}
		w.pgrad = w.pgrad[:0]
		for _, name := range b.params {
			w.pgrad = append(w.pgrad, w.p.grads.grad[w.p.params[name].id].F)
		}
	}
	for _, g := range b.slices[0].pgrad {
		total += len(g)
	}
	b.reduce = make([][2]int, b.workers)
	for g := range b.reduce {
		b.reduce[g] = [2]int{g * total / b.workers, (g + 1) * total / b.workers}
	}
	return nil
}

// reduceRange adds the parameter gradients of slices 1..K-1, in that
// order, into slice 0's, for goroutine g's range of the flat parameter
// list.
func (b *Batched) reduceRange(g int) {
	lo, hi := b.reduce[g][0], b.reduce[g][1]
	off := 0
	for i, dst := range b.slices[0].pgrad {
		a, z := max(lo-off, 0), min(hi-off, len(dst))
		off += len(dst)
		if a >= z {
			continue
		}
		d := dst[a:z]
		for _, w := range b.slices[1:] {
			s := w.pgrad[i][a:z]
			for j := range d {
				d[j] += s[j]
			}
		}
	}
}

// Grad returns the gradient of a trainable initializer computed by the
// last Backward (nil for other names or before the first Backward). The
// slice is overwritten by the next Backward.
func (b *Batched) Grad(name string) []float32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.slices[0].p
	if len(b.slices) > 1 {
		if b.reduce == nil || p.params[name] == nil {
			return nil
		}
		return p.grads.grad[p.params[name].id].F
	}
	gs := p.grads
	if gs == nil || !gs.built {
		return nil
	}
	if v := p.params[name]; v != nil {
		return gs.grad[v.id].F
	}
	return nil
}

// claim runs run(i) for the items i of [0, n) that goroutine g claims:
// first those of its own block [g*n/W, (g+1)*n/W), in order, then, from
// the end backwards, those of the other workers' blocks that nobody has
// claimed yet. Every phase gives a worker the same block, so that its
// slices' activations and gradients (or its chunks of the parameters)
// stay in the cache of the core that last touched them (measured on the
// 2-core test machine, fine-tuning MobileNetV1 at 2 threads against 1:
// with every slice and item claimed first come, first served instead, the
// optimizer update was no faster than at 1 thread, against 1.4x, and the
// student's forward pass 1.3-1.45x faster, against 1.6x); a worker that
// starts late, or that the operating system preempts, still has its
// unstarted items taken over by the others.
func (b *Batched) claim(g, n int, run func(i int)) {
	w := b.workers
	for i := g * n / w; i < (g+1)*n/w; i++ {
		if b.taken[i].CompareAndSwap(0, 1) {
			run(i)
		}
	}
	for j := 1; j < w; j++ {
		h := (g + j) % w
		for i := (h+1)*n/w - 1; i >= h*n/w; i-- {
			if b.taken[i].CompareAndSwap(0, 1) {
				run(i)
			}
		}
	}
}
