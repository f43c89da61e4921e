package sweep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/lprconv/lprconv/dataset"
)

// batches yields model inputs in a fixed order, one batch at a time.
type batches interface {
	// each calls fn with every batch: n samples in NCHW order in x and
	// their labels (-1 when unknown). x and labels are reused between
	// calls.
	each(ctx context.Context, fn func(x []float32, labels []int, n int) error) error
	// count returns the number of samples.
	count() int
	// describe says where the inputs come from, for notes and fingerprints.
	describe() string
}

// datasetBatches reads samples of a data set in index order.
type datasetBatches struct {
	src   dataset.Source
	idx   []int
	pre   dataset.Preprocess
	batch int
	name  string
}

func (d *datasetBatches) count() int       { return len(d.idx) }
func (d *datasetBatches) describe() string { return d.name }

func (d *datasetBatches) each(ctx context.Context, fn func(x []float32, labels []int, n int) error) error {
	l, err := dataset.NewLoader(d.src, d.idx, d.pre, dataset.LoaderOptions{BatchSize: d.batch})
	if err != nil {
		return fmt.Errorf("read %s: %w", d.name, err)
	}
	defer l.Close()
	x := make([]float32, l.BatchLen())
	labels := make([]int, d.batch)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := l.Next(x, labels)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", d.name, err)
		}
		if err := fn(x[:n*d.pre.Size()], labels[:n], n); err != nil {
			return err
		}
	}
}

// randomBatches generates n standard-normal inputs from a seed; batch k is
// the same whatever order or batch size the batches are read in.
type randomBatches struct {
	n, size, batch int
	seed           uint64
}

func (r *randomBatches) count() int { return r.n }
func (r *randomBatches) describe() string {
	return fmt.Sprintf("%d random standard-normal inputs (seed %d)", r.n, r.seed)
}

func (r *randomBatches) each(ctx context.Context, fn func(x []float32, labels []int, n int) error) error {
	x := make([]float32, r.batch*r.size)
	labels := make([]int, r.batch)
	for start := 0; start < r.n; start += r.batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(r.batch, r.n-start)
		for i := 0; i < n; i++ {
			rng := rand.New(rand.NewPCG(r.seed, uint64(start+i)))
			row := x[i*r.size : (i+1)*r.size]
			for j := range row {
				row[j] = float32(rng.NormFloat64())
			}
			labels[i] = -1
		}
		if err := fn(x[:n*r.size], labels[:n], n); err != nil {
			return err
		}
	}
	return nil
}
