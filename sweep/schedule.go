package sweep

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lprconv/lprconv/pipeline"
	"github.com/lprconv/lprconv/report"
)

// DefaultLockPoll is how often a worker checks a configuration that
// another worker is running.
const DefaultLockPoll = 10 * time.Second

// outcome is what is known of one configuration: a row, or the reason its
// budget cannot be met; neither while it has not finished.
type outcome struct {
	done  bool
	row   report.Row
	unmet string
}

// runner runs the configurations of one sweep run under their locks.
type runner struct {
	opts Options
	ev   Evaluator
	lk   *locker
	fp   string
	log  *logger
	poll time.Duration
	out  []outcome // indexed like opts.Configs

	mu       sync.Mutex
	ran      int   // computed by this run
	taken    int   // finished by another worker while this run waited
	done     int   // of todo, for the progress lines
	total    int   // len(todo)
	lost     []int // configurations whose lock was taken over
	firstErr error
	// waiting are the configurations found locked by another worker; only
	// the dispatcher goroutine uses it.
	waiting map[int]bool
}

// run runs the configurations todo, at most jobs at a time. A
// configuration whose lock another worker holds is left to it: the other
// configurations go first, then every poll interval the run checks again,
// takes the other worker's result once it is recorded, and runs the
// configuration itself if the other worker gave up (its lock is gone
// without a result) or died (its lock went stale). On the first error it
// stops starting configurations, waits for those running and returns the
// error.
func (r *runner) run(ctx context.Context, todo []int, jobs int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.total = len(todo)
	r.waiting = map[int]bool{}
	pending := todo
	for round := 0; len(pending) > 0 && ctx.Err() == nil; round++ {
		if round > 0 {
			t := time.NewTimer(r.poll)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		var (
			again []int
			wg    sync.WaitGroup
		)
		sem := make(chan struct{}, jobs)
		for _, i := range pending {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			h, busy, err := r.claim(i)
			if err != nil {
				r.fail(err, cancel)
				<-sem
				break
			}
			if h == nil {
				if busy {
					again = append(again, i)
				}
				<-sem
				continue
			}
			wg.Add(1)
			go func(i int, h *heldLock) {
				defer wg.Done()
				defer func() { <-sem }()
				r.runOne(ctx, cancel, i, h)
			}(i, h)
		}
		wg.Wait()
		r.mu.Lock()
		for _, i := range r.lost {
			r.waiting[i] = true
		}
		pending = append(again, r.lost...)
		r.lost = nil
		r.mu.Unlock()
	}
	return r.firstErr
}

// fail records the first error and stops the run.
func (r *runner) fail(err error, cancel context.CancelFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.firstErr == nil {
		r.firstErr = err
	}
	cancel()
}

// claim takes the lock of configuration i. It returns the held lock; or
// nil and busy when another worker holds it; or nil and not busy when
// another worker has finished it since its state was read (its outcome is
// then recorded).
func (r *runner) claim(i int) (h *heldLock, busy bool, err error) {
	cfg := r.opts.Configs[i]
	h, owner, err := r.lk.tryLock(lockPath(r.opts.Out, cfg))
	if err != nil {
		return nil, false, err
	}
	if h == nil {
		if !r.waiting[i] {
			r.log.printf("sweep: %s is being run by %s; its result will be taken when it finishes", cfg.Name(), owner)
			r.waiting[i] = true
		}
		return nil, true, nil
	}
	modelPath := r.modelPath(cfg)
	if row, ok, _ := loadState(r.opts.Out, cfg, r.fp, modelPath); ok {
		h.release()
		row.Model = modelPath
		r.record(i, outcome{done: true, row: row}, "finished by another worker, taken from its state")
		return nil, false, nil
	}
	if why, ok := loadUnmet(r.opts.Out, cfg, r.fp); ok && r.waiting[i] {
		h.release()
		r.record(i, outcome{done: true, unmet: why}, "has no row (found by another worker): "+why)
		return nil, false, nil
	}
	if owner.Host != "" {
		r.log.printf("sweep: %s: took over the stale lock of %s (no heartbeat for %s)", cfg.Name(), owner, r.lk.stale)
	}
	return h, false, nil
}

// record stores the outcome of a configuration another worker finished.
func (r *runner) record(i int, o outcome, what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out[i] = o
	r.taken++
	r.done++
	r.log.printf("sweep: %s %s (%d of %d done, %d remaining)", r.opts.Configs[i].Name(), what, r.done, r.total, r.total-r.done)
}

// runOne runs configuration i under the held lock h, records its state and
// releases the lock.
func (r *runner) runOne(ctx context.Context, cancel context.CancelFunc, i int, h *heldLock) {
	defer h.release()
	cfg := r.opts.Configs[i]
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	var lostTo atomic.Pointer[lockOwner]
	r.lk.heartbeat(h, func(by lockOwner) {
		lostTo.Store(&by)
		ccancel()
	})
	r.mu.Lock()
	r.log.printf("sweep: %s running (%d of %d remaining)", cfg.Name(), r.total-r.done, r.total)
	r.mu.Unlock()
	start := time.Now()
	row, err := runOne(cctx, r.opts, r.ev, cfg, r.fp)
	r.mu.Lock()
	defer r.mu.Unlock()
	if by := lostTo.Load(); err != nil && by != nil && ctx.Err() == nil {
		// The lock went stale (this worker stalled) and another worker
		// took the configuration over: leave it to that worker.
		r.log.printf("sweep: %s: its lock was taken over by %s; waiting for that worker's result", cfg.Name(), *by)
		r.lost = append(r.lost, i)
		return
	}
	var inf *pipeline.InfeasibleError
	if err != nil && cfg.HasBudget() && errors.As(err, &inf) {
		// An unreachable budget is a finding, not a failure: the other
		// configurations go on.
		why := strings.TrimPrefix(err.Error(), "configuration "+cfg.Name()+": ")
		if serr := saveUnmet(r.opts.Out, cfg, r.fp, why); serr != nil {
			r.log.printf("sweep: %v", serr)
		}
		r.out[i] = outcome{done: true, unmet: why}
		r.done++
		r.log.printf("sweep: %s has no row: %v (%d of %d done, %d remaining)", cfg.Name(), err, r.done, r.total, r.total-r.done)
		return
	}
	if err != nil {
		if r.firstErr == nil {
			r.firstErr = err
		}
		cancel()
		return
	}
	r.out[i] = outcome{done: true, row: row}
	r.ran++
	r.done++
	r.log.printf("sweep: %s finished in %s (%d of %d done, %d remaining)", cfg.Name(),
		time.Since(start).Round(time.Millisecond), r.done, r.total, r.total-r.done)
}
