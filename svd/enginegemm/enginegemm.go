// Package enginegemm adapts the engine's float32 GEMM kernels
// (engine/kernels) to svd.Sgemm, so that callers can speed up the subspace
// iteration of package svd (Options.Sgemm) without making svd itself depend
// on the engine.
package enginegemm

import (
	"sync"

	"github.com/lprconv/lprconv/engine/kernels"
	"github.com/lprconv/lprconv/svd"
)

// New returns an svd.Sgemm that runs on the engine's kernels with up to
// threads goroutines per call (0: GOMAXPROCS). It is safe for concurrent
// use: every call borrows a kernel Context from a pool.
func New(threads int) svd.Sgemm {
	pool := &sync.Pool{New: func() any { return kernels.NewContext(threads) }}
	return func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
		ctx := pool.Get().(*kernels.Context)
		ctx.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		pool.Put(ctx)
	}
}
