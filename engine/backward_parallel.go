package engine

import "math"

// bwLoop names the element-wise backward loop that bwWork runs.
type bwLoop int

const (
	bwRelu bwLoop = iota
	bwBatchNorm
	bwPool
)

// bwWork is the state of an element-wise backward loop split over the
// program's threads by Ctx.parallelFor. It lives in the Ctx, so that
// handing it to the worker pool does not allocate; ops run one at a time,
// so one is enough.
type bwWork struct {
	loop      bwLoop
	dx, dy    []float32
	x, y      []float32 // the op's input and output, as each loop needs
	bn        *BatchNormOp
	params    [5][]float32 // BatchNorm: gamma, mean, var, and the gradients dgamma, dbeta
	dstat     [2][]float32 // BatchNorm: dmean, dvar
	pool      *PoolOp
	overwrite bool // write dx outright instead of adding to it
}

// run processes elements (Relu), channels (BatchNorm) or planes
// (pooling) [lo, hi).
func (w *bwWork) run(lo, hi int) {
	switch w.loop {
	case bwRelu:
		if w.overwrite {
			reluMask(w.dx[lo:hi], w.dy[lo:hi], w.y[lo:hi])
		} else {
			reluBackward(w.dx[lo:hi], w.dy[lo:hi], w.y[lo:hi])
		}
	case bwBatchNorm:
		w.batchNorm(lo, hi)
	case bwPool:
		w.pool.poolBackward(w.x, w.y, w.dy, w.dx, lo, hi)
	}
}

// parallelRelu adds (or, with overwrite, writes) dy where y > 0 into dx
// on the program's threads.
func parallelRelu(c *Ctx, dx, dy, y []float32, overwrite bool) {
	w := &c.bw
	*w = bwWork{loop: bwRelu, dx: dx, dy: dy, y: y, overwrite: overwrite}
	c.parallelFor(len(y), 1, w)
	*w = bwWork{}
}

// batchNorm runs the BatchNormalization backward of channels [lo, hi).
func (w *bwWork) batchNorm(lo, hi int) {
	op, x, dy, dx := w.bn, w.x, w.dy, w.dx
	gamma, mean, vr, dgamma, dbeta := w.params[0], w.params[1], w.params[2], w.params[3], w.params[4]
	dmean, dvar := w.dstat[0], w.dstat[1]
	stats := dgamma != nil || dbeta != nil || dmean != nil || dvar != nil
	for ch := lo; ch < hi; ch++ {
		inv := 1 / math.Sqrt(float64(vr[ch]+op.Eps))
		a := float32(float64(gamma[ch]) * inv)
		m := mean[ch]
		var sdy, sdyx float64 // sum dy, sum dy*(x-mean)
		for i := 0; i < op.N; i++ {
			base := (i*op.C + ch) * op.Inner
			xr, gr := x[base:base+op.Inner], dy[base:base+op.Inner]
			var s, sx float32
			switch {
			case dx != nil && stats:
				s, sx = bnRow(dx[base:base+op.Inner], gr, xr, a, m, w.overwrite)
			case dx != nil && w.overwrite:
				dr := dx[base : base+op.Inner]
				for j, g := range gr {
					dr[j] = g * a
				}
			case dx != nil:
				dr := dx[base : base+op.Inner]
				for j, g := range gr {
					dr[j] += g * a
				}
			case stats:
				s, sx = bnSums(gr, xr, m)
			}
			sdy += float64(s)
			sdyx += float64(sx)
		}
		if dgamma != nil {
			dgamma[ch] += float32(sdyx * inv)
		}
		if dbeta != nil {
			dbeta[ch] += float32(sdy)
		}
		if dmean != nil {
			dmean[ch] -= float32(sdy) * a
		}
		if dvar != nil {
			dvar[ch] += float32(-0.5 * sdyx * float64(gamma[ch]) * inv * inv * inv)
		}
	}
}

// bnRow writes (set) or adds g·a into d and returns Σ g and Σ g·(x − m),
// in one pass with four independent accumulators each.
func bnRow(d, g, x []float32, a, m float32, set bool) (float32, float32) {
	n := len(g)
	d, x = d[:n], x[:n]
	var s0, s1, s2, s3, t0, t1, t2, t3 float32
	j := 0
	for ; j+4 <= n; j += 4 {
		gg, xx, dd := g[j:j+4:j+4], x[j:j+4:j+4], d[j:j+4:j+4]
		if set {
			dd[0], dd[1], dd[2], dd[3] = gg[0]*a, gg[1]*a, gg[2]*a, gg[3]*a
		} else {
			dd[0] += gg[0] * a
			dd[1] += gg[1] * a
			dd[2] += gg[2] * a
			dd[3] += gg[3] * a
		}
		s0 += gg[0]
		s1 += gg[1]
		s2 += gg[2]
		s3 += gg[3]
		t0 += gg[0] * (xx[0] - m)
		t1 += gg[1] * (xx[1] - m)
		t2 += gg[2] * (xx[2] - m)
		t3 += gg[3] * (xx[3] - m)
	}
	for ; j < n; j++ {
		if set {
			d[j] = g[j] * a
		} else {
			d[j] += g[j] * a
		}
		s0 += g[j]
		t0 += g[j] * (x[j] - m)
	}
	return (s0 + s1) + (s2 + s3), (t0 + t1) + (t2 + t3)
}

// bnSums returns Σ g and Σ g·(x − m) with four independent accumulators
// each, so that the additions do not wait on one another.
func bnSums(g, x []float32, m float32) (float32, float32) {
	x = x[:len(g)]
	var s0, s1, s2, s3, t0, t1, t2, t3 float32
	j := 0
	for ; j+4 <= len(g); j += 4 {
		gg, xx := g[j:j+4:j+4], x[j:j+4:j+4]
		s0 += gg[0]
		s1 += gg[1]
		s2 += gg[2]
		s3 += gg[3]
		t0 += gg[0] * (xx[0] - m)
		t1 += gg[1] * (xx[1] - m)
		t2 += gg[2] * (xx[2] - m)
		t3 += gg[3] * (xx[3] - m)
	}
	for ; j < len(g); j++ {
		s0 += g[j]
		t0 += g[j] * (x[j] - m)
	}
	return (s0 + s1) + (s2 + s3), (t0 + t1) + (t2 + t3)
}
