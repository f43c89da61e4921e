package kernels

import "math"

// microKernel computes the mr x nr tile C = alpha*A*B + beta*C, where B is
// a packed panel (nr values per k step, kc steps) and A is read as the
// kernel's mode says: a packed panel (mr values per k step, lda unused),
// rows of a row-major A (row i at a[i*lda:]) or columns of a transposed A
// (element (i, p) at a[p*lda+i]). C (row stride ldc) is not read when beta
// is 0.
type microKernel func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32)

// kernelSpec describes one GEMM micro-kernel family and its cache blocking.
type kernelSpec struct {
	name       string
	mr, nr     int // register tile: mr rows by nr columns of C
	kc, mc, nc int // cache blocks along k, m and n
	packed     microKernel
	rows, cols microKernel // A read in place; nil when not available
	// bRows reads A packed and B in place from a row-major B (row p at
	// b[p*ldb:]); nil when not available.
	bRows func(kc int, a, b []float32, ldb int, c []float32, ldc int, alpha, beta float32)
	// directMaxN is the widest block of C for which A is read in place
	// instead of packed (A is reused only ceil(n/nr) times there).
	directMaxN int
	// epKernels, when set, are packed, rows, cols and bRows with the
	// epilogue fused (row bias and clamp; see epKernels).
	ep *epKernels
	// edge, when set, are packed, rows and cols computing only the first
	// 16 columns of a tile (from the same nr-column B panel), for the last
	// panel of C when it has at most 16 columns: half the work of a full
	// tile (a 14x14 plane has 196 = 6*32 + 4 columns).
	edge *[3]microKernel
	// row1, when set, computes one row of a tile (1 x nr) reading A as
	// columns (element (0, p) at a[p*lda]): the rows of a last row panel
	// shorter than rowTailMax, one by one (a packed panel is read with lda
	// = mr).
	row1 microKernel
}

// directBMaxK is the deepest GEMM whose B gemmBlock always reads in place
// (when the micro-kernels can).
const directBMaxK = 256

// rowTailMax is the most rows of a partial row panel computed with
// kernelSpec.row1 one by one instead of one full tile: the one-row kernel
// is bound by its two chains of dependent FMAs, about a quarter of a full
// tile's time for 8x32 (a 7x7 plane, 49 = 6*8 + 1 pixels, in
// PointwisePixelMajor).
const rowTailMax = 3

// epKernels are a family's micro-kernels that apply a row-bias-and-clamp
// epilogue to the tile before storing it: c = min(max(alpha*A*B + beta*C
// + bias[i], lo), hi) for row i, with the operations of biasActTile in
// the same order (the same bits as the kernel followed by applyTile).
type epKernels struct {
	packed, rows, cols func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32, bias []float32, lo, hi float32)
	bRows              func(kc int, a, b []float32, ldb int, c []float32, ldc int, alpha, beta float32, bias []float32, lo, hi float32)
}

// parallelMinFlops is the smallest GEMM (2mnk) worth splitting over threads.
const parallelMinFlops = 1 << 20

func (ctx *Context) runGemm(g *gemmArgs, ba batchArgs) {
	if g.m == 0 || g.n == 0 {
		return
	}
	if g.k == 0 || g.alpha == 0 {
		// C = beta*C; for a batch seen as one GEMM, item by item.
		items, nb := ba.count, g.n
		sc := ba.strideC
		if g.nb < g.n {
			items, nb, sc = g.n/g.nb, g.nb, g.sc
		}
		for bi := 0; bi < items; bi++ {
			scaleMatrix(g.c[bi*sc:], g.m, nb, g.ldc, g.beta)
			if g.hasEp {
				g.ep.applyTile(g.c[bi*sc:], g.ldc, g.m, nb, 0, 0)
			}
		}
		return
	}
	if ba.count == 1 && ctx.gemv(g) {
		return
	}
	t := &ctx.gemm
	t.ctx = ctx
	t.args = *g
	t.batched = ba
	spec := ctx.kern
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
			gemmBlock(t.ctx.kern, s, &g, 0, g.m, 0, g.n)
		}
		return
	}
	if t.splitN {
		gemmBlock(t.ctx.kern, s, &g, 0, g.m, lo*t.unit, min(hi*t.unit, g.n))
	} else {
		gemmBlock(t.ctx.kern, s, &g, lo*t.unit, min(hi*t.unit, g.m), 0, g.n)
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
func gemmBlock(spec *kernelSpec, s *threadScratch, g *gemmArgs, i0, i1, j0, j1 int) {
	mr, nr := spec.mr, spec.nr
	// With few row panels a packed B panel is used once or twice: read B in
	// place instead (panels of full width inside one batch item). With a
	// short k (at most directBMaxK: 32 KiB of a 32-column panel) a panel
	// read in place stays in L1 or L2 for all the row panels of a block,
	// and packing costs more than it saves: a first 3x3 convolution (k =
	// 27) with 24 or 32 filters ran 8-10% faster, MobileNetV1's 1x1
	// convolutions with 32 and 64 input channels on 112x112 and 56x56
	// planes 6-15%, and (MobileNetV1 1.0, batch 1) with 128 input channels
	// on 56x56 planes 10% (the packed B, 1.6 MB, outgrew L2).
	directB := spec.bRows != nil && !g.bPacked && !g.transB && g.kb == g.k && (i1-i0 <= 2*mr || g.k <= directBMaxK)
	// With B packed ahead (PointwisePixelMajor), A is an image's Xᵀ, reused
	// by every column panel: read in place, it made the 14x14 planes of
	// MobileNetV1 6% faster, but the 7x7 ones 6% slower (the partial last
	// row panel is packed either way).
	direct := !directB && spec.rows != nil && (j1-j0 <= spec.directMaxN || g.bPacked && g.m >= pixelMajorDirectRows) && g.kb == g.k
	kcMax := min(spec.kc, g.k)
	mcMax := min(spec.mc, roundUp(i1-i0, mr))
	ncMax := min(spec.nc, roundUp(j1-j0, nr))
	s.packA = grow(s.packA, mcMax*kcMax)
	s.packB = grow(s.packB, ncMax*kcMax)
	s.tile = grow(s.tile, mr*nr)
	alpha := g.alpha
	for jc := j0; jc < j1; jc += spec.nc {
		nc := min(spec.nc, j1-jc)
		for pc := 0; pc < g.k; pc += spec.kc {
			kc := min(spec.kc, g.k-pc)
			if !g.bPacked {
				packB(s.packB, g, pc, kc, jc, nc, nr, directB)
			}
			beta := g.beta
			if pc > 0 {
				beta = 1
			}
			for ic := i0; ic < i1; ic += spec.mc {
				mc := min(spec.mc, i1-ic)
				packA(s.packA, g, ic, mc, pc, kc, mr, direct)
				for jr := 0; jr < nc; jr += nr {
					cols := min(nr, nc-jr)
					bp := s.packB[jr*kc : jr*kc+nr*kc]
					if g.bPacked { // jc is a multiple of nr
						off := (jc+jr)/nr*g.k*nr + pc*nr
						bp = g.b[off : off+nr*kc]
					}
					jg := jc + jr // column of the (batched) C
					bi, j := jg/g.nb, jg%g.nb
					inItem := j+cols <= g.nb
					for ir := 0; ir < mc; ir += mr {
						rows := min(mr, mc-ir)
						kern, a, lda := spec.packed, s.packA[ir*kc:], 0
						mode := 0 // A packed, rows (1) or columns (2) in place
						if direct && rows == mr {
							lda = g.lda
							if g.transA {
								kern, a, mode = spec.cols, g.a[pc*g.lda+ic+ir:], 2
							} else {
								kern, a, mode = spec.rows, g.a[(ic+ir)*g.lda+pc:], 1
							}
						}
						last := g.hasEp && pc+kc == g.k
						if directB && cols == nr && inItem {
							bsl := g.b[bi*g.sb+pc*g.ldb+j:]
							if rows == mr {
								cp := g.c[bi*g.sc+(ic+ir)*g.ldc+j:]
								if last && spec.ep != nil && g.ep.ColBias == nil {
									bias, lo, hi := g.ep.rowTile(ic+ir, mr)
									spec.ep.bRows(kc, s.packA[ir*kc:], bsl, g.ldb, cp, g.ldc, alpha, beta, bias, lo, hi)
									continue
								}
								spec.bRows(kc, s.packA[ir*kc:], bsl, g.ldb, cp, g.ldc, alpha, beta)
								if last {
									g.ep.applyTile(cp, g.ldc, mr, nr, ic+ir, j)
								}
							} else {
								spec.bRows(kc, s.packA[ir*kc:], bsl, g.ldb, s.tile, nr, 1, 0)
								writeTile(g, s.tile[:rows*nr], nr, ic+ir, jg, cols, alpha, beta, last)
							}
							continue
						}
						if rows == mr && cols == nr && inItem {
							cp := g.c[bi*g.sc+(ic+ir)*g.ldc+j:]
							if last && spec.ep != nil && g.ep.ColBias == nil {
								bias, lo, hi := g.ep.rowTile(ic+ir, mr)
								[...]func(int, []float32, int, []float32, []float32, int, float32, float32, []float32, float32, float32){
									spec.ep.packed, spec.ep.rows, spec.ep.cols}[mode](kc, a, lda, bp, cp, g.ldc, alpha, beta, bias, lo, hi)
								continue
							}
							kern(kc, a, lda, bp, cp, g.ldc, alpha, beta)
							if last {
								g.ep.applyTile(cp, g.ldc, mr, nr, ic+ir, j)
							}
							continue
						}
						switch {
						case rows <= rowTailMax && spec.row1 != nil && mode == 0:
							for i := 0; i < rows; i++ {
								spec.row1(kc, a[i:], mr, bp, s.tile[i*nr:], nr, 1, 0)
							}
						case cols <= 16 && spec.edge != nil:
							spec.edge[mode](kc, a, lda, bp, s.tile, nr, 1, 0)
						default:
							kern(kc, a, lda, bp, s.tile, nr, 1, 0)
						}
						writeTile(g, s.tile[:rows*nr], nr, ic+ir, jg, cols, alpha, beta, last)
					}
				}
			}
		}
	}
}

// writeTile stores C = alpha*T + beta*C for a rows x cols tile T (row
// stride ldt) whose top-left corner is at row i0, batched column jg of C,
// and applies the epilogue when last.
func writeTile(g *gemmArgs, tile []float32, ldt, i0, jg, cols int, alpha, beta float32, last bool) {
	rows := len(tile) / ldt
	if ldt == 32 && alpha == 1 && beta == 0 && !last && g.nb < cols {
		if bi, j := jg/g.nb, jg%g.nb; j == 0 && cols == 32 &&
			segCopyFast(false, tile, g.c[bi*g.sc+i0*g.ldc:], g.sc, g.ldc, rows, g.nb) {
			return
		}
		var offs [32]int32
		if base, maxOff, ok := batchOffsets(&offs, jg, cols, g.nb, g.sc); ok &&
			scatterTileFast(g.c[base+i0*g.ldc:], &offs, maxOff, tile, g.ldc, rows, cols) {
			return
		}
	}
	bi, j := jg/g.nb, jg%g.nb
	for off := 0; off < cols; {
		seg := min(cols-off, g.nb-j)
		base := bi*g.sc + i0*g.ldc + j
		for i := 0; i < rows; i++ {
			dst := g.c[base+i*g.ldc : base+i*g.ldc+seg]
			src := tile[i*ldt+off : i*ldt+off+seg]
			switch {
			case beta == 0 && alpha == 1:
				for x, v := range src {
					dst[x] = v
				}
			case beta == 0:
				for x, v := range src {
					dst[x] = alpha * v
				}
			case beta == 1:
				for x, v := range src {
					dst[x] += alpha * v
				}
			default:
				for x, v := range src {
					dst[x] = alpha*v + beta*dst[x]
				}
			}
		}
		if last {
			g.ep.applyTile(g.c[base:], g.ldc, rows, seg, i0, j)
		}
		off += seg
		bi, j = bi+1, 0
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// packA copies op(A)[ic:ic+mc, pc:pc+kc] into panels of mr rows, each
// stored k-major (mr values per k step), zero-padding the last panel. With
// onlyPartial it packs only a last panel shorter than mr rows (the others
// are read in place).
func packA(dst []float32, g *gemmArgs, ic, mc, pc, kc, mr int, onlyPartial bool) {
	start := 0
	if onlyPartial {
		start = mc / mr * mr
	}
	for ir := start; ir < mc; ir += mr {
		rows := min(mr, mc-ir)
		panel := dst[ir*kc : ir*kc+mr*kc]
		if rows < mr {
			clear(panel)
		}
		for p0 := 0; p0 < kc; { // segments of one batch item along k
			bi, pp := (pc+p0)/g.kb, (pc+p0)%g.kb
			seg := min(kc-p0, g.kb-pp)
			a := g.a[bi*g.sa:]
			if g.transA {
				for p := 0; p < seg; p++ {
					src := a[(pp+p)*g.lda+ic+ir:]
					copy(panel[(p0+p)*mr:(p0+p)*mr+rows], src[:rows])
				}
			} else {
				done := 0
				if rows == mr {
					done = packTransFast(panel[p0*mr:], a[(ic+ir)*g.lda+pp:], g.lda, seg, mr, mr)
				}
				for i := 0; i < rows && done < seg; i++ {
					src := a[(ic+ir+i)*g.lda+pp:]
					src = src[done:seg]
					d := panel[(p0+done)*mr+i:]
					for p, v := range src {
						d[p*mr] = v
					}
				}
			}
			p0 += seg
		}
	}
}

// packB copies op(B)[pc:pc+kc, jc:jc+nc] into panels of nr columns, each
// stored k-major (nr values per k step), zero-padding the last panel. With
// skipInPlace it skips the full panels inside one batch item, which the
// bRows kernel reads in place.
func packB(dst []float32, g *gemmArgs, pc, kc, jc, nc, nr int, skipInPlace bool) {
	for jr := 0; jr < nc; jr += nr {
		cols := min(nr, nc-jr)
		if skipInPlace && cols == nr && (jc+jr)%g.nb+nr <= g.nb {
			continue // read in place by the bRows kernel
		}
		panel := dst[jr*kc : jr*kc+nr*kc]
		if cols < nr {
			clear(panel)
		}
		if nr == 32 && cols == 32 && g.nb < 32 && !g.transB && g.kb == g.k {
			if bi, j := (jc+jr)/g.nb, (jc+jr)%g.nb; j == 0 &&
				segCopyFast(true, panel, g.b[bi*g.sb+pc*g.ldb:], g.sb, g.ldb, kc, g.nb) {
				continue
			}
			var offs [32]int32
			if base, maxOff, ok := batchOffsets(&offs, jc+jr, 32, g.nb, g.sb); ok &&
				packGatherFast(panel, g.b[base+pc*g.ldb:], &offs, maxOff, g.ldb, kc) {
				continue
			}
		}
		for j0 := 0; j0 < cols; { // segments of one batch item along n
			bj, jj := (jc+jr+j0)/g.nb, (jc+jr+j0)%g.nb
			jseg := min(cols-j0, g.nb-jj)
			for p0 := 0; p0 < kc; { // segments of one batch item along k
				bk, pp := (pc+p0)/g.kb, (pc+p0)%g.kb
				pseg := min(kc-p0, g.kb-pp)
				b := g.b[(bj+bk)*g.sb:] // at most one of bj, bk is nonzero
				d := panel[p0*nr+j0:]
				if !g.transB {
					if jseg == nr && packCopyFast(d, b[pp*g.ldb+jj:], g.ldb, pseg, nr) {
						p0 += pseg
						continue
					}
					src := b[pp*g.ldb+jj:]
					if jseg >= 16 {
						for p := 0; p < pseg; p++ {
							copy(d[p*nr:p*nr+jseg], src[p*g.ldb:p*g.ldb+jseg])
						}
					} else { // short segments: a loop beats a memmove call
						for p := 0; p < pseg; p++ {
							sp := src[p*g.ldb : p*g.ldb+jseg]
							dp := d[p*nr : p*nr+jseg]
							for x, v := range sp {
								dp[x] = v
							}
						}
					}
				} else {
					done := packTransFast(d, b[jj*g.ldb+pp:], g.ldb, pseg, nr, jseg/8*8)
					if jseg%8 != 0 {
						done = 0
					}
					for j := 0; j < jseg; j++ {
						src := b[(jj+j)*g.ldb+pp:]
						src = src[done:pseg]
						for p, v := range src {
							d[(done+p)*nr+j] = v
						}
					}
				}
				p0 += pseg
			}
			j0 += jseg
		}
	}
}

// batchOffsets fills offs with the offsets of the cols (<= 32) batched
// columns starting at jg (items of nb columns, stride stride) relative to
// the first one's item (0 past cols), and returns the first item's offset
// and the largest offset; ok is false when an offset does not fit in int32.
func batchOffsets(offs *[32]int32, jg, cols, nb, stride int) (base, maxOff int, ok bool) {
	*offs = [32]int32{}
	bi, j := jg/nb, jg%nb
	base = bi * stride
	off := j
	for x := range offs[:cols] {
		if off > math.MaxInt32 {
			return 0, 0, false
		}
		offs[x] = int32(off)
		maxOff = off
		j++
		off++
		if j == nb {
			j = 0
			off += stride - nb
		}
	}
	return base, maxOff, true
}
