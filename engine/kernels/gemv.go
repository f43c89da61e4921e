package kernels

// gemvTask runs a GEMM with m == 1 or n == 1 as dot products or AXPYs,
// split over ranges of the output vector.
type gemvTask struct {
	g    gemmArgs
	x    []float32 // the vector operand, gathered contiguous
	y    []float32 // AXPY accumulator (length of the output)
	dots bool      // output i is dot(row i of the matrix, x)
	col  bool      // n == 1: the output is column 0 of C (else row 0)
}

// gemv computes g when one of m, n is 1 and reports whether it did.
func (ctx *Context) gemv(g *gemmArgs) bool {
	if g.bPacked || g.nb != g.n || g.kb != g.k || (g.m != 1 && g.n != 1) {
		return false
	}
	s := &ctx.scratch[0]
	t := &ctx.gemv1
	t.g = *g
	var out int
	s.buf = grow(s.buf, g.k)
	x := s.buf
	if g.n == 1 {
		// x = column 0 of op(B); the matrix is op(A) (m x k).
		out = g.m
		if g.transB {
			x = g.b[:g.k]
		} else {
			for p := range x {
				x[p] = g.b[p*g.ldb]
			}
		}
		t.dots = !g.transA
		t.col = true
	} else {
		// x = row 0 of op(A); the matrix is op(B) (k x n), output is Cᵀ.
		out = g.n
		if !g.transA {
			x = g.a[:g.k]
		} else {
			for p := range x {
				x[p] = g.a[p*g.lda]
			}
		}
		t.dots = g.transB
		t.col = false
	}
	t.x = x
	if !t.dots {
		s.buf2 = grow(s.buf2, out)
		t.y = s.buf2
	}
	threads := ctx.threads
	if 2*g.m*g.n*g.k < parallelMinFlops {
		threads = 1
	}
	ctx.parallel(t, (out+15)/16, threads)
	*t = gemvTask{}
	return true
}

func (t *gemvTask) run(lo, hi, tid int) {
	g := &t.g
	out := g.n
	if t.col {
		out = g.m
	}
	lo, hi = lo*16, min(hi*16, out)
	// The matrix M (out x k in dot form, k x out in AXPY form).
	mat, ld := g.b, g.ldb
	if t.col {
		mat, ld = g.a, g.lda
	}
	// C element of output i.
	cidx := func(i int) int {
		if t.col {
			return i * g.ldc
		}
		return i
	}
	store := func(i int, v float32) {
		ci := cidx(i)
		if g.beta == 0 {
			g.c[ci] = g.alpha * v
		} else {
			g.c[ci] = g.alpha*v + g.beta*g.c[ci]
		}
	}
	if t.dots {
		for i := lo; i < hi; i++ {
			store(i, vecDot(mat[i*ld:i*ld+g.k], t.x))
		}
	} else {
		y := t.y[lo:hi]
		clear(y)
		for p, xv := range t.x {
			vecAxpy(xv, mat[p*ld+lo:p*ld+hi], y)
		}
		for i, v := range y {
			store(lo+i, v)
		}
	}
	if g.hasEp && hi > lo {
		if t.col {
			g.ep.applyTile(g.c[lo*g.ldc:], g.ldc, hi-lo, 1, lo, 0)
		} else {
			g.ep.applyTile(g.c[lo:], g.ldc, 1, hi-lo, 0, lo)
		}
	}
}

// dotGeneric returns sum x[i]*y[i] (len(y) >= len(x)).
func dotGeneric(x, y []float32) float32 { return dot(x, y) }

// axpyGeneric computes y += alpha*x (len(y) >= len(x)).
func axpyGeneric(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}
