package dataset

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
)

// Batches yields batches of NCHW float32 samples with their labels (-1
// where unknown): Next fills dst with at most len(labels) samples and
// returns how many, and io.EOF after the last batch of an epoch. Sources
// that have epochs (a Loader) start the next one on the call after that.
// Loader and Noise are Batches; evaluate, finetune and rankalloc read
// through this interface.
type Batches interface {
	Next(dst []float32, labels []int) (int, error)
}

// Reader is Batches that holds resources until closed.
type Reader interface {
	Batches
	io.Closer
}

// Samples is a fixed sequence of samples that can be read any number of
// times, each time in the same order: a Subset of a data set or Noise.
type Samples interface {
	// Open returns a reader of one pass over the samples in batches of
	// batch; the caller closes it.
	Open(batch int) (Reader, error)
	// Len returns the number of samples.
	Len() int
	// String says where the samples come from (for notes and
	// fingerprints).
	String() string
}

// DefaultWorkers and DefaultPrefetch are the loader parallelism used for
// every model run over a data set (evaluation, calibration, training):
// two decoding goroutines keep two batches ahead of the model.
const (
	DefaultWorkers  = 2
	DefaultPrefetch = 2
)

// Subset is a preprocessed selection of a data set's samples, read in the
// order of Indices.
type Subset struct {
	Source  Source
	Indices []int
	Pre     Preprocess
	// Name is the data set's path, for messages.
	Name string
}

// Len returns the number of samples.
func (s Subset) Len() int { return len(s.Indices) }

// String returns the data set's name.
func (s Subset) String() string { return s.Name }

// Open returns a loader over the samples in index order, with the default
// parallelism.
func (s Subset) Open(batch int) (Reader, error) {
	l, err := NewLoader(s.Source, s.Indices, s.Pre, LoaderOptions{BatchSize: batch, Workers: DefaultWorkers, Prefetch: DefaultPrefetch})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.Name, err)
	}
	return l, nil
}

// Noise is Count samples of Size standard-normal values. Sample i is
// drawn from a PCG generator seeded with (Seed, i), so every sample is the
// same whatever the batch size or the order in which batches are read.
// It is the one random-input source (compare --random, sweep --random).
type Noise struct {
	Count, Size int
	Seed        uint64
}

// Len returns Count.
func (n Noise) Len() int { return n.Count }

// String describes the inputs.
func (n Noise) String() string {
	return fmt.Sprintf("%d random standard-normal inputs (seed %d)", n.Count, n.Seed)
}

// Open returns a reader of the samples in order.
func (n Noise) Open(batch int) (Reader, error) {
	if n.Count < 0 || n.Size <= 0 || batch <= 0 {
		return nil, fmt.Errorf("random inputs: count %d, size %d and batch %d must be positive", n.Count, n.Size, batch)
	}
	return &noiseReader{n: n}, nil
}

// noiseReader reads Noise from the first sample on.
type noiseReader struct {
	n    Noise
	next int
}

// Next fills dst with as many samples as fit (up to len(labels)).
func (r *noiseReader) Next(dst []float32, labels []int) (int, error) {
	if r.next >= r.n.Count {
		return 0, io.EOF
	}
	k := min(len(labels), len(dst)/r.n.Size, r.n.Count-r.next)
	if k <= 0 {
		return 0, errors.New("random inputs: the buffer holds no sample")
	}
	for i := 0; i < k; i++ {
		rng := rand.New(rand.NewPCG(r.n.Seed, uint64(r.next+i)))
		row := dst[i*r.n.Size : (i+1)*r.n.Size]
		for j := range row {
			row[j] = float32(rng.NormFloat64())
		}
		labels[i] = -1
	}
	r.next += k
	return k, nil
}

// Close does nothing.
func (r *noiseReader) Close() error { return nil }
