package kernels

import "fmt"

// gemmArgs is one C = alpha*op(A)*op(B) + beta*C problem.
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
}

// gemmTask splits one GEMM into independent blocks of C for the pool.
type gemmTask struct {
	ctx     *Context
	args    gemmArgs
	splitN  bool // split columns (else rows) of C between threads
	unit    int  // rows or columns per work unit
	batched batchArgs
}

// batchArgs describes a strided batch of GEMMs sharing one gemmArgs shape.
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
	ctx.scratch = make([]threadScratch, 1)
	ctx.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Sgemm is the package-level Sgemm run with the Context's buffers and
// threads. It does not allocate once its buffers have grown to the problem.
func (ctx *Context) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	g := gemmArgs{transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc}
	checkGemm(&g, 0, 0, 0, 1)
	ctx.runGemm(&g, batchArgs{count: 1})
}

// SgemmBatched computes count independent products
// C_i = alpha*op(A_i)*op(B_i) + beta*C_i where A_i starts at a[i*strideA],
// B_i at b[i*strideB] and C_i at c[i*strideC]. A stride of 0 shares one
// matrix between all products (for example the weight of a 1x1 convolution,
// strideA = 0, applied to every image of an NCHW batch). strideC must not be
// 0 unless count is 1. It does not allocate once the Context's buffers have
// grown to the problem.
func (ctx *Context) SgemmBatched(transA, transB bool, m, n, k int, alpha float32, a []float32, lda, strideA int, b []float32, ldb, strideB int, beta float32, c []float32, ldc, strideC int, count int) {
	g := gemmArgs{transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc}
	if count < 0 {
		panic(fmt.Sprintf("kernels: SgemmBatched count %d < 0", count))
	}
	if count == 0 {
		return
	}
	if strideC == 0 && count > 1 {
		panic("kernels: SgemmBatched strideC is 0 with count > 1")
	}
	checkGemm(&g, strideA, strideB, strideC, count)
	ctx.runGemm(&g, batchArgs{count: count, strideA: strideA, strideB: strideB, strideC: strideC})
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
