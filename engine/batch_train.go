package engine

import (
	"fmt"
)

// work runs goroutine g's part of a phase: the reduction of its range of
// parameters, its block of Parallel items, or its slices g, g+W, g+2W, ...
// The same goroutine runs the same slices in every phase, so that a
// slice's activations, gradients and inputs stay in the cache of the core
// that last touched them (which goroutine runs which slice does not
// change any result).
func (b *Batched) work(g, phase int) {
	if phase == phaseFunc {
		b.runFunc(g)
		return
	}
	if phase == phaseReduce {
		b.reduceRange(g)
		return
	}
	for k := g; k < len(b.slices); k += b.workers {
		b.runPhase(k, phase)
	}
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
