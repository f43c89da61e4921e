package kernels

import "fmt"

// gemmArgs is one C = alpha*op(A)*op(B) + beta*C problem, possibly made of
// a strided batch seen as one larger product: with nb < n the columns of
// B and C are split into items of nb columns (item i at offsets i*sb and
// i*sc), and with kb < k the depth is split into items of kb (A and B of
// item i at offsets i*sa and i*sb), whose products are summed.
type gemmArgs struct {
	transA, transB bool
	m, n, k        int
	alpha          float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	beta           float32
	c              []float32
	ldc            int
	nb, kb         int
	sa, sb, sc     int
	ep             Epilogue // applied to C after the product when hasEp
	hasEp          bool
	// bPacked: b holds op(B) already packed in panels of the kernel's nr
	// columns over the whole depth (see PackedWeights); ldb is unused.
	bPacked bool
}

// gemmTask splits one GEMM into independent blocks of C for the pool.
type gemmTask struct {
	ctx     *Context
	args    gemmArgs
	splitN  bool // split columns (else rows) of C between threads
	unit    int  // rows or columns per work unit; 0: whole batch items
	batched batchArgs
}

// batchArgs describes a strided batch of independent GEMMs.
type batchArgs struct {
	count                     int
	strideA, strideB, strideC int
}

// Sgemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices, where
// op(X) is X or Xᵀ. op(A) is m x k, op(B) is k x n and C is m x n; lda, ldb
// and ldc are the row strides of A, B and C as stored. When beta is 0, C is
// not read, so it may hold garbage (even NaN). Sgemm runs on one goroutine
// and allocates packing buffers on every call; use Context.Sgemm in loops.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	var ctx Context
	ctx.threads = 1
	ctx.kern = bestKernel
	ctx.scratch = make([]threadScratch, 1)
	ctx.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Sgemm is the package-level Sgemm run with the Context's buffers and
// threads. It does not allocate once its buffers have grown to the problem.
func (ctx *Context) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ctx.SgemmEx(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, Epilogue{})
}

// SgemmEx is Context.Sgemm followed by the fused epilogue ep (biases and
// clamping, see Epilogue), applied to each tile of C while it is in cache.
func (ctx *Context) SgemmEx(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, ep Epilogue) {
	g := gemmArgs{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, nb: n, kb: k}
	checkGemm(&g, 0, 0, 0, 1)
	g.setEpilogue(ep)
	ctx.runGemm(&g, batchArgs{count: 1})
}

func (g *gemmArgs) setEpilogue(ep Epilogue) {
	if ep.active() {
		ep.check(g.m, g.n)
		g.ep, g.hasEp = ep, true
	}
}

// SgemmBatched computes count products of a strided batch, where A_i
// starts at a[i*strideA], B_i at b[i*strideB] and C_i at c[i*strideC]:
//
//   - strideC != 0: C_i = alpha*op(A_i)*op(B_i) + beta*C_i for every i. With
//     strideA = 0 all products share one A (the weight of a 1x1 convolution
//     applied to every image of an NCHW batch) and run as one wide GEMM
//     whose columns span the batch, which is fast even for tiny images.
//   - strideC == 0: C = alpha*sum_i op(A_i)*op(B_i) + beta*C, one GEMM of
//     depth count*k (the weight gradient of a 1x1 convolution summed over
//     the images of a batch).
//
// It does not allocate once the Context's buffers have grown to the
// problem.
func (ctx *Context) SgemmBatched(transA, transB bool, m, n, k int, alpha float32, a []float32, lda, strideA int, b []float32, ldb, strideB int, beta float32, c []float32, ldc, strideC int, count int) {
	ctx.SgemmBatchedEx(transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, count, Epilogue{})
}

// SgemmBatchedEx is SgemmBatched followed by the fused epilogue ep on every
// C_i (ColBias has n values, RowBias m).
func (ctx *Context) SgemmBatchedEx(transA, transB bool, m, n, k int, alpha float32, a []float32, lda, strideA int, b []float32, ldb, strideB int, beta float32, c []float32, ldc, strideC int, count int, ep Epilogue) {
	g := gemmArgs{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, nb: n, kb: k}
	if count < 0 {
		panic(fmt.Sprintf("kernels: SgemmBatched count %d < 0", count))
	}
	if count == 0 {
		return
	}
	checkGemm(&g, strideA, strideB, strideC, count)
	g.setEpilogue(ep)
	switch {
	case count == 1:
		ctx.runGemm(&g, batchArgs{count: 1})
	case strideC == 0 && k == 1 && (transA || lda == 1) && (!transB || ldb == 1) &&
		strideA >= max(m, 1) && strideB >= max(n, 1):
		// Every product is an outer product of a column and a row: their sum
		// is [A_0 ... A_count-1] [B_0; ...; B_count-1], one GEMM of depth count.
		t := gemmArgs{transA: true, transB: false, m: m, n: n, k: count, alpha: alpha,
			a: a, lda: strideA, b: b, ldb: strideB, beta: beta, c: c, ldc: ldc, nb: n, kb: count,
			ep: g.ep, hasEp: g.hasEp}
		ctx.runGemm(&t, batchArgs{count: 1})
	case strideC == 0:
		if k == 0 || alpha == 0 || m == 0 || n == 0 {
			ctx.runGemm(&g, batchArgs{count: 1})
			return
		}
		g.k, g.sa, g.sb = count*k, strideA, strideB
		ctx.runGemm(&g, batchArgs{count: 1})
	case strideA == 0 && n == 1 && ldc == 1 && (transB || ldb == 1) &&
		strideB >= max(k, 1) && strideC >= max(m, 1) && !(g.hasEp && g.ep.ColBias != nil):
		// Every C_i is one column: together they are the rows of
		// Cᵀ (count x m) = [B_0 ... B_count-1]ᵀ op(A)ᵀ, one plain GEMM
		// (whose column bias is the row bias of the C_i).
		t := gemmArgs{transA: false, transB: !transA, m: count, n: m, k: k, alpha: alpha,
			a: b, lda: strideB, b: a, ldb: lda, beta: beta, c: c, ldc: strideC, nb: m, kb: k,
			ep: g.ep, hasEp: g.hasEp}
		t.ep.RowBias, t.ep.ColBias = nil, g.ep.RowBias
		ctx.runGemm(&t, batchArgs{count: 1})
	case strideA == 0:
		g.n, g.sb, g.sc = count*n, strideB, strideC
		if n == 0 {
			return
		}
		ctx.runGemm(&g, batchArgs{count: 1})
	default:
		ctx.runGemm(&g, batchArgs{count: count, strideA: strideA, strideB: strideB, strideC: strideC})
	}
}

func checkGemm(g *gemmArgs, strideA, strideB, strideC, count int) {
	if g.m < 0 || g.n < 0 || g.k < 0 {
		panic(fmt.Sprintf("kernels: negative GEMM size m=%d n=%d k=%d", g.m, g.n, g.k))
	}
	ar, ac := g.m, g.k
	if g.transA {
		ar, ac = g.k, g.m
	}
	br, bc := g.k, g.n
	if g.transB {
		br, bc = g.n, g.k
	}
	check := func(name string, x []float32, rows, cols, ld, stride int) {
		if ld < max(cols, 1) {
			panic(fmt.Sprintf("kernels: ld%s=%d < %d columns", name, ld, cols))
		}
		if rows == 0 || cols == 0 {
			return
		}
		need := (count-1)*stride + (rows-1)*ld + cols
		if stride < 0 || len(x) < need {
			panic(fmt.Sprintf("kernels: %s has %d elements, need %d (%dx%d, ld %d, stride %d, count %d)", name, len(x), need, rows, cols, ld, stride, count))
		}
	}
	if g.alpha != 0 {
		check("a", g.a, ar, ac, g.lda, strideA)
		check("b", g.b, br, bc, g.ldb, strideB)
	}
	check("c", g.c, g.m, g.n, g.ldc, strideC)
}
