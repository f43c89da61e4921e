package finetune

import (
	"sync"
	"sync/atomic"
)

// minParallelFloats is the least number of floats a step's per-tensor
// work (feature losses, optimizer updates) must touch for forEach to use
// more than one goroutine: below it, starting goroutines costs more than
// the work (a few microseconds against about 1e4 floats per microsecond).
const minParallelFloats = 1 << 15

// forEach runs f(i) for every i in [0, n) on up to workers goroutines, the
// caller's included, each claiming the next unclaimed index, and returns
// when all are done. Every f(i) must touch only its own data; results
// that f writes to slot i are the same whichever goroutine ran it, so a
// caller that combines them in index order gets the same bits as a loop.
//
// The fine-tuning step runs its per-tensor work through it (the feature
// terms of the loss, the optimizer updates), which would otherwise run on
// one core between the engine's parallel passes.
func forEach(workers, n int, f func(i int)) {
	workers = min(workers, n)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1)) - 1
			if i >= n {
				return
			}
			f(i)
		}
	}
	var wg sync.WaitGroup
	wg.Add(workers - 1)
	for range workers - 1 {
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}
