package kernels

// kernelSpec describes one GEMM micro-kernel and its cache blocking.
type kernelSpec struct {
	name       string
	mr, nr     int // register tile: mr rows by nr columns of C
	kc, mc, nc int // cache blocks along k, m and n
	// full computes the mr x nr tile sum_p a[p*mr+i] * b[p*nr+j] from packed
	// panels and stores it into c (row stride ldc), or adds it when acc.
	full func(kc int, a, b, c []float32, ldc int, acc bool)
}

// parallelMinFlops is the smallest GEMM (2mnk) worth splitting over threads.
const parallelMinFlops = 1 << 20

func (ctx *Context) runGemm(g *gemmArgs, ba batchArgs) {
	if g.m == 0 || g.n == 0 {
		return
	}
	if g.k == 0 || g.alpha == 0 {
		for bi := 0; bi < ba.count; bi++ {
			scaleMatrix(g.c[bi*ba.strideC:], g.m, g.n, g.ldc, g.beta)
		}
		return
	}
	t := &ctx.gemm
	t.ctx = ctx
	t.args = *g
	t.batched = ba
	spec := &activeKernel
	flops := 2 * g.m * g.n * g.k * ba.count
	threads := ctx.threads
	if flops < parallelMinFlops {
		threads = 1
	}
	switch {
	case ba.count > 1:
		t.unit = 0
		ctx.parallel(t, ba.count, threads)
	case g.n >= g.m || g.m < 2*spec.mr:
		t.splitN = true
		t.unit = spec.nr
		ctx.parallel(t, (g.n+spec.nr-1)/spec.nr, threads)
	default:
		t.splitN = false
		t.unit = spec.mr
		ctx.parallel(t, (g.m+spec.mr-1)/spec.mr, threads)
	}
	t.args = gemmArgs{} // drop references to caller memory
}

func (t *gemmTask) run(lo, hi, tid int) {
	s := &t.ctx.scratch[tid]
	g := t.args
	if t.unit == 0 { // whole products of a batch
		ba := t.batched
		for bi := lo; bi < hi; bi++ {
			g.a = t.args.a[bi*ba.strideA:]
			g.b = t.args.b[bi*ba.strideB:]
			g.c = t.args.c[bi*ba.strideC:]
			gemmBlock(s, &g, 0, g.m, 0, g.n)
		}
		return
	}
	if t.splitN {
		gemmBlock(s, &g, 0, g.m, lo*t.unit, min(hi*t.unit, g.n))
	} else {
		gemmBlock(s, &g, lo*t.unit, min(hi*t.unit, g.m), 0, g.n)
	}
}

// scaleMatrix sets C = beta*C over an m x n block; beta 0 clears C even if
// it holds NaN.
func scaleMatrix(c []float32, m, n, ldc int, beta float32) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// gemmBlock computes rows [i0, i1) and columns [j0, j1) of C with packing
// buffers from s.
func gemmBlock(s *threadScratch, g *gemmArgs, i0, i1, j0, j1 int) {
	spec := &activeKernel
	mr, nr := spec.mr, spec.nr
	if g.beta != 0 && g.beta != 1 {
		scaleMatrix(g.c[i0*g.ldc+j0:], i1-i0, j1-j0, g.ldc, g.beta)
	}
	kcMax := min(spec.kc, g.k)
	mcMax := min(spec.mc, roundUp(i1-i0, mr))
	ncMax := min(spec.nc, roundUp(j1-j0, nr))
	s.packA = grow(s.packA, mcMax*kcMax)
	s.packB = grow(s.packB, ncMax*kcMax)
	s.tile = grow(s.tile, mr*nr)
	for jc := j0; jc < j1; jc += spec.nc {
		nc := min(spec.nc, j1-jc)
		for pc := 0; pc < g.k; pc += spec.kc {
			kc := min(spec.kc, g.k-pc)
			packB(s.packB, g, pc, kc, jc, nc, nr)
			acc := pc > 0 || g.beta != 0
			for ic := i0; ic < i1; ic += spec.mc {
				mc := min(spec.mc, i1-ic)
				packA(s.packA, g, ic, mc, pc, kc, mr)
				for jr := 0; jr < nc; jr += nr {
					cols := min(nr, nc-jr)
					bp := s.packB[jr*kc : jr*kc+nr*kc]
					for ir := 0; ir < mc; ir += mr {
						rows := min(mr, mc-ir)
						ap := s.packA[ir*kc : ir*kc+mr*kc]
						coff := (ic+ir)*g.ldc + jc + jr
						if rows == mr && cols == nr {
							spec.full(kc, ap, bp, g.c[coff:], g.ldc, acc)
							continue
						}
						spec.full(kc, ap, bp, s.tile, nr, false)
						for i := 0; i < rows; i++ {
							dst := g.c[coff+i*g.ldc : coff+i*g.ldc+cols]
							src := s.tile[i*nr : i*nr+cols]
							if acc {
								for j, v := range src {
									dst[j] += v
								}
							} else {
								copy(dst, src)
							}
						}
					}
				}
			}
		}
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// packA copies alpha*op(A)[ic:ic+mc, pc:pc+kc] into panels of mr rows, each
// stored k-major (mr values per k step), zero-padding the last panel.
func packA(dst []float32, g *gemmArgs, ic, mc, pc, kc, mr int) {
	alpha := g.alpha
	for ir := 0; ir < mc; ir += mr {
		rows := min(mr, mc-ir)
		panel := dst[ir*kc : ir*kc+mr*kc]
		if rows < mr {
			clear(panel)
		}
		if g.transA {
			for p := 0; p < kc; p++ {
				src := g.a[(pc+p)*g.lda+ic+ir:]
				src = src[:rows]
				d := panel[p*mr : p*mr+rows]
				for i, v := range src {
					d[i] = alpha * v
				}
			}
			continue
		}
		for i := 0; i < rows; i++ {
			src := g.a[(ic+ir+i)*g.lda+pc:]
			src = src[:kc]
			for p, v := range src {
				panel[p*mr+i] = alpha * v
			}
		}
	}
}

// packB copies op(B)[pc:pc+kc, jc:jc+nc] into panels of nr columns, each
// stored k-major (nr values per k step), zero-padding the last panel.
func packB(dst []float32, g *gemmArgs, pc, kc, jc, nc, nr int) {
	for jr := 0; jr < nc; jr += nr {
		cols := min(nr, nc-jr)
		panel := dst[jr*kc : jr*kc+nr*kc]
		if cols < nr {
			clear(panel)
		}
		if !g.transB {
			for p := 0; p < kc; p++ {
				src := g.b[(pc+p)*g.ldb+jc+jr:]
				copy(panel[p*nr:p*nr+cols], src[:cols])
			}
			continue
		}
		for j := 0; j < cols; j++ {
			src := g.b[(jc+jr+j)*g.ldb+pc:]
			src = src[:kc]
			for p, v := range src {
				panel[p*nr+j] = v
			}
		}
	}
}
