package finetune

import (
	"errors"
	"io"

	"github.com/lprconv/lprconv/dataset"
)

// batchFeed reads and augments the training batches of a run one step
// ahead, on its own goroutine, so that neither loading (the copy out of
// the loader's prefetch buffers, or a read when the loader does not
// prefetch) nor augmentation sits on the critical path: while step k
// runs, batch k+1 is prepared in the other of two buffers.
//
// The batches, and the order of calls to the source, are exactly those of
// reading in the step loop: the feed makes the same Next calls, augments
// each full batch with the number of the step that will use it (the
// augmentation seed), and stops after the last full batch the run needs,
// so that a source shared with a later stage (Reconstruct, then Distill)
// is left where the step loop would leave it.
type batchFeed struct {
	x      [2][]float32
	labels [2][]int
	ready  chan fedBatch
	free   chan int
	stop   chan struct{}
	done   chan struct{}
	cur    int // buffer the step loop holds (-1: none)
}

// fedBatch is one result of the source's Next, in buffer buf.
type fedBatch struct {
	buf, n int
	err    error
}

// startFeed starts reading src in batches of batch samples of size
// floats, for need full batches, the first of which step first uses.
func startFeed(src dataset.Batches, aug *dataset.Augmenter, batch, size, first, need int) *batchFeed {
	f := &batchFeed{ready: make(chan fedBatch), free: make(chan int, 2), stop: make(chan struct{}), done: make(chan struct{}), cur: -1}
	for b := range 2 {
		f.x[b] = make([]float32, batch*size)
		f.labels[b] = make([]int, batch)
		f.free <- b
	}
	go func() {
		defer close(f.done)
		defer close(f.ready)
		step := first
		for step < first+need {
			var b int
			select {
			case b = <-f.free:
			case <-f.stop:
				return
			}
			n, err := src.Next(f.x[b], f.labels[b])
			if err == nil && n >= batch {
				err = aug.Apply(f.x[b], f.labels[b], n, int64(step))
				step++
			}
			select {
			case f.ready <- fedBatch{buf: b, n: n, err: err}:
			case <-f.stop:
				return
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return
			}
		}
	}()
	return f
}

// next returns the next batch (its images and labels, valid until the
// following call) with the source's count and error; it hands the
// previous batch's buffer back to the feed.
func (f *batchFeed) next() ([]float32, []int, int, error) {
	if f.cur >= 0 {
		f.free <- f.cur
		f.cur = -1
	}
	it, ok := <-f.ready
	if !ok {
		return nil, nil, 0, errors.New("internal error: the batch feed has stopped")
	}
	f.cur = it.buf
	return f.x[it.buf], f.labels[it.buf], it.n, it.err
}

// close stops the feed and waits for its goroutine, so that the source is
// free for the caller when the run returns.
func (f *batchFeed) close() {
	close(f.stop)
	<-f.done
}
