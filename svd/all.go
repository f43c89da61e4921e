package svd

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"sync"
)

// Job is one weight to factorize with FactorizeAll.
type Job struct {
	// Name identifies the layer in errors.
	Name string
	// W is the out x in weight, row-major.
	W       []float32
	Out, In int
	Rank    int
	Kind    ResidualKind
	// Cov, when not nil, selects data-aware factorization (see FactorizeData).
	Cov []float64
}

// FactorizeAll factorizes the jobs on up to workers goroutines (0 means
// GOMAXPROCS) and returns the factors in job order. Each job's result
// depends only on the job and opts, not on scheduling.
func FactorizeAll(ctx context.Context, jobs []Job, opts Options, workers int) ([]*Factors, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(jobs))
	res := make([]*Factors, len(jobs))
	errs := make([]error, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				j := jobs[i]
				var err error
				if j.Cov != nil {
					res[i], err = FactorizeData(j.W, j.Out, j.In, j.Rank, j.Kind, j.Cov, opts)
				} else {
					res[i], err = Factorize(j.W, j.Out, j.In, j.Rank, j.Kind, opts)
				}
				if err != nil {
					errs[i] = fmt.Errorf("layer %q: %w", j.Name, err)
				}
			}
		}()
	}
	// Start the largest jobs first so that the workers finish together.
	order := make([]int, len(jobs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return len(jobs[order[a]].W) > len(jobs[order[b]].W)
	})
feed:
	for _, i := range order {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}
