package engine

import (
	"runtime"
	"sync"
)

// ranger is a piece of work over an index range, run by parallelFor.
type ranger interface {
	run(lo, hi int)
}

type poolItem struct {
	r      ranger
	lo, hi int
	wg     *sync.WaitGroup
}

// pool is a fixed set of worker goroutines for element-wise ops. Submitting
// work does not allocate.
type pool struct {
	threads int
	work    chan poolItem
	wg      sync.WaitGroup
	cleanup runtime.Cleanup
}

// close stops the workers; it is safe to call more than once.
func (p *pool) close() {
	if p.work != nil {
		p.cleanup.Stop()
		close(p.work)
		p.work = nil
	}
}

func newPool(threads int) *pool {
	p := &pool{threads: threads}
	if threads > 1 {
		work := make(chan poolItem, threads)
		p.work = work
		for i := 1; i < threads; i++ {
			go func() {
				for it := range work {
					it.r.run(it.lo, it.hi)
					it.wg.Done()
				}
			}()
		}
		p.cleanup = runtime.AddCleanup(p, func(w chan poolItem) { close(w) }, work)
	}
	return p
}

// minParallel is the smallest amount of element-wise work (in elements)
// worth splitting over threads.
const minParallel = 1 << 15

// parallelFor runs r over [0, n) split into at most threads parts; cost is
// the number of elements each index touches (to skip threading small work).
func (c *Ctx) parallelFor(n, cost int, r ranger) {
	p := c.pool
	parts := 1
	if p != nil && p.work != nil {
		parts = min(p.threads, n, max(1, n*cost/minParallel))
	}
	if parts <= 1 {
		r.run(0, n)
		return
	}
	p.wg.Add(parts - 1)
	for i := 1; i < parts; i++ {
		p.work <- poolItem{r: r, lo: i * n / parts, hi: (i + 1) * n / parts, wg: &p.wg}
	}
	r.run(0, n/parts)
	p.wg.Wait()
}
