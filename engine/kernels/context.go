package kernels

import (
	"runtime"
	"sync"
)

// task is a unit of parallel work: run processes items [lo, hi) on worker tid.
type task interface {
	run(lo, hi, tid int)
}

// workItem is what the pool hands to one worker goroutine.
type workItem struct {
	t      task
	lo, hi int
	tid    int
	wg     *sync.WaitGroup
}

// Context holds reusable packing buffers and a goroutine pool so that
// steady-state kernel calls allocate nothing. A Context is not safe for
// concurrent use: give each goroutine that calls kernels its own Context.
// The pool goroutines stop when Close is called or when the Context becomes
// unreachable.
type Context struct {
	threads int
	kern    *kernelSpec // GEMM micro-kernel
	work    chan workItem
	wg      sync.WaitGroup
	closed  bool
	cleanup runtime.Cleanup

	// per-thread scratch for GEMM packing and other kernels
	scratch []threadScratch

	gemm  gemmTask
	gemv1 gemvTask
	dw    dwTask
	dwb   dwBackTask

	imcol1   imcolTask
	col      []float32 // Conv2D column buffer
	colT     []float32 // PointwisePixelMajor's transposed output
	colLimit int       // column buffer budget in values (0: colBudget)

	dwW16       []float32 // interleaved depthwise weights of dwTiny1
	dwTiny1     dwTinyTask
	dwTinyCN1   dwTinyCNTask // dwTinyCN (layout_amd64.go)
	dwTinyGrad1 dwTinyGradTask
	dwIdx       [9 * 16]int32       // lane permutations of dwTiny1
	dwFlat      map[[5]int][]uint16 // masks of the flat depthwise kernels by plane shapes and stride (dwFlatMasks)
}

// threadScratch is the private working memory of one thread.
type threadScratch struct {
	packA []float32
	packB []float32
	tile  []float32
	buf   []float32
	buf2  []float32

	padGrad padBuffer // zero-padded plane of the 3x3 depthwise input gradient
	zero    []float32 // always zero; stands for rows in the padding
}

// NewContext returns a Context that runs kernels on up to threads goroutines
// (the calling goroutine included). threads <= 0 means runtime.GOMAXPROCS(0).
func NewContext(threads int) *Context {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	c := &Context{threads: threads, kern: bestKernel, scratch: make([]threadScratch, threads)}
	if threads > 1 {
		work := make(chan workItem, threads)
		c.work = work
		for i := 1; i < threads; i++ {
			go worker(work)
		}
		c.cleanup = runtime.AddCleanup(c, func(w chan workItem) { close(w) }, work)
	}
	return c
}

func worker(work <-chan workItem) {
	for it := range work {
		it.t.run(it.lo, it.hi, it.tid)
		it.wg.Done()
	}
}

// Threads returns the number of goroutines the Context uses.
func (c *Context) Threads() int { return c.threads }

// Close stops the pool goroutines. The Context must not be used afterwards.
func (c *Context) Close() {
	if c.work != nil && !c.closed {
		c.cleanup.Stop()
		close(c.work)
	}
	c.closed = true
}

// parallel splits [0, n) into at most min(threads, maxParts) contiguous
// chunks and runs t on them, the calling goroutine taking the first chunk.
func (c *Context) parallel(t task, n, maxParts int) {
	parts := c.threads
	if maxParts < parts {
		parts = maxParts
	}
	if parts > n {
		parts = n
	}
	if parts <= 1 || c.work == nil {
		t.run(0, n, 0)
		return
	}
	c.wg.Add(parts - 1)
	for p := 1; p < parts; p++ {
		lo, hi := p*n/parts, (p+1)*n/parts
		c.work <- workItem{t: t, lo: lo, hi: hi, tid: p, wg: &c.wg}
	}
	t.run(0, n/parts, 0)
	c.wg.Wait()
}

// grow returns buf resized to n elements, reallocating only when too small.
func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n, n+n/4)
	}
	return buf[:n]
}

// zeroGuard is the number of zero values kept before and after a zero
// row. The vector kernels read a row with masked loads that may reach up to
// a vector outside it; those lanes are discarded, but when they reached
// into another heap object (written between calls), the stride-1 and -2 3x3
// depthwise kernels ran up to 6x slower on an AMD EPYC (Zen 4), depending on
// where that object happened to be allocated. With the guard, every byte a
// masked load can touch belongs to the zero row.
const zeroGuard = 64

// zeroRow returns at least n zero values (never written to), with
// zeroGuard zero values on each side.
func (s *threadScratch) zeroRow(n int) []float32 {
	if len(s.zero) < n+2*zeroGuard {
		s.zero = make([]float32, n+2*zeroGuard)
	}
	return s.zero[zeroGuard : len(s.zero)-zeroGuard]
}
