package dataset

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// LoaderOptions control batching and ordering.
type LoaderOptions struct {
	// BatchSize is the number of samples per batch (> 0).
	BatchSize int
	// Shuffle visits samples in a random order derived from Seed.
	Shuffle bool
	// Seed makes the order deterministic.
	Seed int64
	// Reshuffle draws a new order every epoch (from Seed and the epoch
	// number); otherwise every epoch repeats the first epoch's order.
	Reshuffle bool
	// DropLast skips the final batch when it is not full.
	DropLast bool
	// Workers is the number of goroutines decoding samples of one batch in
	// parallel (0 or 1: decode in the calling goroutine).
	Workers int
	// Prefetch is the number of batches prepared ahead by a background
	// goroutine (0: none, batches are prepared inside Next).
	Prefetch int
}

// Loader reads batches of preprocessed samples in NCHW float32 order.
// It is not safe for concurrent use.
type Loader struct {
	src   Source
	idx   []int
	pre   Preprocess
	opts  LoaderOptions
	epoch int   // epoch in progress (the first is 0)
	order []int // order of the current epoch
	pos   int   // next position in order (synchronous mode)
	ended bool  // the current epoch has returned io.EOF
	pool  *pool

	// Prefetch state, for the current epoch.
	ready chan batch
	free  chan batch
	stop  chan struct{}
	done  chan struct{}
}

type batch struct {
	data   []float32
	labels []int
	n      int
	err    error
}

// NewLoader returns a Loader over the given indices of src (all samples
// when indices is nil), preprocessing each with pre.
func NewLoader(src Source, indices []int, pre Preprocess, opts LoaderOptions) (*Loader, error) {
	if err := pre.Validate(); err != nil {
		return nil, err
	}
	if opts.BatchSize <= 0 {
		return nil, fmt.Errorf("loader: batch size %d must be positive", opts.BatchSize)
	}
	if opts.Workers < 0 || opts.Prefetch < 0 {
		return nil, fmt.Errorf("loader: workers %d and prefetch %d must not be negative", opts.Workers, opts.Prefetch)
	}
	if indices == nil {
		indices = Indices(src.Len())
	}
	for _, i := range indices {
		if i < 0 || i >= src.Len() {
			return nil, fmt.Errorf("loader: index %d out of range [0,%d)", i, src.Len())
		}
	}
	l := &Loader{src: src, idx: append([]int(nil), indices...), pre: pre, opts: opts}
	l.pool = newPool(src, pre, max(1, opts.Workers))
	l.startEpoch()
	return l, nil
}

// SampleSize returns the number of values of one sample (C*H*W).
func (l *Loader) SampleSize() int { return l.pre.Size() }

// BatchLen returns the number of values Next writes for a full batch.
func (l *Loader) BatchLen() int { return l.opts.BatchSize * l.pre.Size() }

// Len returns the number of samples per epoch.
func (l *Loader) Len() int { return len(l.idx) }

// Batches returns the number of batches per epoch.
func (l *Loader) Batches() int {
	if l.opts.DropLast {
		return len(l.idx) / l.opts.BatchSize
	}
	return (len(l.idx) + l.opts.BatchSize - 1) / l.opts.BatchSize
}

// Epoch returns the number of the epoch in progress, starting at 0.
func (l *Loader) Epoch() int { return l.epoch }

// Order returns the sample indices of the current epoch, in visiting order.
func (l *Loader) Order() []int { return append([]int(nil), l.order...) }

// epochOrder returns the visiting order of epoch e.
func (l *Loader) epochOrder(e int) []int {
	if !l.opts.Shuffle {
		return l.idx
	}
	stream := uint64(0)
	if l.opts.Reshuffle {
		stream = uint64(e) + 1
	}
	return shuffled(l.idx, l.opts.Seed, stream)
}

func (l *Loader) startEpoch() {
	l.order = l.epochOrder(l.epoch)
	l.pos = 0
	l.ended = false
	if l.opts.Prefetch > 0 {
		l.startPrefetch()
	}
}

// batchRange returns the positions in order of the batch starting at pos,
// or ok=false past the end of the epoch.
func (l *Loader) batchRange(order []int, pos int) (lo, hi int, ok bool) {
	hi = min(pos+l.opts.BatchSize, len(order))
	if pos >= hi || l.opts.DropLast && hi-pos < l.opts.BatchSize {
		return 0, 0, false
	}
	return pos, hi, true
}

// Next fills dst with the next batch (n samples in NCHW order, dst holding
// at least n*SampleSize values) and labels with their labels, and returns n.
// At the end of an epoch it returns 0 and io.EOF; the following call starts
// the next epoch. An unreadable sample ends the batch with an error that
// names its file.
func (l *Loader) Next(dst []float32, labels []int) (int, error) {
	if l.pool == nil {
		return 0, errors.New("loader: Next after Close")
	}
	if l.ended {
		l.epoch++
		l.startEpoch()
	}
	need := min(l.opts.BatchSize, len(l.order))
	if len(dst) < need*l.pre.Size() || len(labels) < need {
		return 0, fmt.Errorf("loader: buffers hold %d values and %d labels, a batch needs %d and %d", len(dst), len(labels), need*l.pre.Size(), need)
	}
	if l.opts.Prefetch > 0 {
		b, ok := <-l.ready
		if !ok {
			l.ended = true
			return 0, io.EOF
		}
		if b.err != nil {
			l.free <- b
			return 0, b.err
		}
		copy(dst, b.data[:b.n*l.pre.Size()])
		copy(labels, b.labels[:b.n])
		n := b.n
		l.free <- b
		return n, nil
	}
	lo, hi, ok := l.batchRange(l.order, l.pos)
	if !ok {
		l.ended = true
		return 0, io.EOF
	}
	l.pos = hi
	if err := l.pool.fill(l.order[lo:hi], dst, labels); err != nil {
		return 0, err
	}
	return hi - lo, nil
}

// Seek positions the loader at batch b of epoch e (both from 0), as if it
// had read every batch before it: a resumed training run continues the same
// sample order without reading the skipped samples.
func (l *Loader) Seek(e, b int) error {
	if l.pool == nil {
		return errors.New("loader: Seek after Close")
	}
	if e < 0 || b < 0 || b > l.Batches() {
		return fmt.Errorf("loader: cannot seek to batch %d of epoch %d (%d batches per epoch)", b, e, l.Batches())
	}
	l.stopPrefetch()
	l.epoch = e
	l.order = l.epochOrder(e)
	l.pos = b * l.opts.BatchSize
	l.ended = false
	if l.opts.Prefetch > 0 {
		l.startPrefetch()
	}
	return nil
}

// startPrefetch starts the goroutine that prepares the current epoch's batches.
func (l *Loader) startPrefetch() {
	l.stopPrefetch()
	if l.free == nil {
		l.free = make(chan batch, l.opts.Prefetch+1)
		for range l.opts.Prefetch + 1 {
			l.free <- batch{data: make([]float32, l.BatchLen()), labels: make([]int, l.opts.BatchSize)}
		}
	}
	l.ready = make(chan batch, l.opts.Prefetch)
	l.stop = make(chan struct{})
	l.done = make(chan struct{})
	order, ready, stop, done, start := l.order, l.ready, l.stop, l.done, l.pos
	go func() {
		defer close(done)
		defer close(ready)
		for pos := start; ; {
			lo, hi, ok := l.batchRange(order, pos)
			if !ok {
				return
			}
			pos = hi
			var b batch
			select {
			case b = <-l.free:
			case <-stop:
				return
			}
			b.n = hi - lo
			b.err = l.pool.fill(order[lo:hi], b.data, b.labels)
			select {
			case ready <- b:
			case <-stop:
				l.free <- b
				return
			}
			if b.err != nil {
				return
			}
		}
	}()
}

// stopPrefetch stops the prefetch goroutine and returns its buffers.
func (l *Loader) stopPrefetch() {
	if l.stop == nil {
		return
	}
	close(l.stop)
	for b := range l.ready {
		l.free <- b
	}
	<-l.done
	l.stop, l.ready, l.done = nil, nil, nil
}

// Close stops background work. It does not close the Source.
func (l *Loader) Close() error {
	if l.pool == nil {
		return nil
	}
	l.stopPrefetch()
	l.pool.close()
	l.pool = nil
	return nil
}

// pool decodes and preprocesses the samples of one batch, in parallel when
// it has more than one worker. fill is called by one goroutine at a time.
type pool struct {
	src     Source
	pre     Preprocess
	workers int
	local   worker // used when workers == 1

	jobs chan job
	wg   sync.WaitGroup
	mu   sync.Mutex
	// err is the error of the failed sample earliest in the batch (errK
	// its position), whichever worker met it first, so that the error a
	// batch reports does not depend on the goroutines' timing.
	err  error
	errK int
	// Batch in progress.
	order  []int
	dst    []float32
	labels []int
}

type job struct{ k int }

type worker struct {
	s  Sample
	sc scratch
}

func newPool(src Source, pre Preprocess, workers int) *pool {
	p := &pool{src: src, pre: pre, workers: workers}
	if workers > 1 {
		p.jobs = make(chan job, workers)
		for range workers {
			go p.run(p.jobs)
		}
	}
	return p
}

func (p *pool) run(jobs <-chan job) {
	var w worker
	for j := range jobs {
		if err := p.one(&w, j.k); err != nil {
			p.mu.Lock()
			if p.err == nil || j.k < p.errK {
				p.err, p.errK = err, j.k
			}
			p.mu.Unlock()
		}
		p.wg.Done()
	}
}

// one reads and preprocesses sample k of the batch in progress.
func (p *pool) one(w *worker, k int) error {
	size := p.pre.Size()
	if err := p.src.ReadSample(p.order[k], &w.s); err != nil {
		return err
	}
	if err := p.pre.apply(&w.s, p.dst[k*size:(k+1)*size], &w.sc); err != nil {
		return err
	}
	p.labels[k] = w.s.Label
	return nil
}

func (p *pool) fill(order []int, dst []float32, labels []int) error {
	p.order, p.dst, p.labels = order, dst, labels
	defer func() { p.order, p.dst, p.labels = nil, nil, nil }()
	if p.workers == 1 {
		for k := range order {
			if err := p.one(&p.local, k); err != nil {
				return err
			}
		}
		return nil
	}
	p.err = nil
	p.wg.Add(len(order))
	for k := range order {
		p.jobs <- job{k}
	}
	p.wg.Wait()
	return p.err
}

func (p *pool) close() {
	if p.jobs != nil {
		close(p.jobs)
		p.jobs = nil
	}
}
