package engine

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Phases a team runs on every worker goroutine.
const (
	phaseForward = iota
	phaseBackward
	phaseReduce
	phaseFunc
	phaseStop
)

// spinBudget is how long an idle team worker polls for its next phase
// before it blocks. Measured on the 2-core test machine (a virtual
// machine), waking a blocked goroutine whose thread the OS has put to
// sleep takes 40-220 µs, about what one phase of a fine-tuning step at 32
// images per worker costs in the kernels, and a step has four or five
// phases; the gaps between the phases of a step (the loss, the optimizer
// update) are shorter than the budget, so a worker that polls starts the
// next phase within about a microsecond. Polling only ever runs on a core
// that would otherwise be idle, and calls runtime.Gosched, so other
// goroutines of the process (data loading) run in between; a worker that
// stays idle longer than the budget blocks and costs nothing. The cost
// does not grow with the core count: with W workers each polls on its own
// core for at most the budget after a phase, touching only its own
// mailbox (no shared cache line), and a phase still wakes blocked workers
// down a tree in about log2(W) latencies.
const spinBudget = 500 * time.Microsecond

// team is the set of long-lived goroutines that run the phases of one or
// more Batched programs (see ShareWorkers): worker 0 is the caller's
// goroutine, worker k > 0 a goroutine of the team. Waking a worker stores
// its item and sets a flag that the worker polls for spinBudget after
// each phase; only a worker that has stopped polling is woken through its
// channel. Nothing is allocated and no lock is taken on the hot path
// beyond the caller's uncontended one, and the one WaitGroup that ends a
// phase. Wake-ups go down a binary tree (worker k wakes 2k+1 and 2k+2
// before it works), so starting W workers takes about log2(W) wake-up
// latencies, not W.
type team struct {
	workers []*teamWorker
	wg      sync.WaitGroup
	// mu serializes the phases of the programs sharing the team (each
	// program serializes its own calls; two programs sharing a team may
	// be called from different goroutines).
	mu sync.Mutex
	// users counts the programs using the team; the last to release it
	// stops the goroutines.
	umu   sync.Mutex
	users int
}

type teamItem struct {
	b     *Batched
	k     int
	phase int
	wg    *sync.WaitGroup
}

// teamWorker is the mailbox of one team goroutine. The padding keeps
// other data (another worker's mailbox) off the cache lines that the
// worker polls.
type teamWorker struct {
	_       [64]byte
	item    teamItem     // written by the waker before pending is set
	pending atomic.Int32 // 1: item holds a phase to run
	parked  atomic.Int32 // 1: the worker blocks on wake (or is about to)
	wake    chan struct{}
	_       [64]byte
}

func newTeam(n int) *team {
	t := &team{}
	for range n - 1 {
		w := &teamWorker{wake: make(chan struct{}, 1)}
		t.workers = append(t.workers, w)
		go w.loop()
	}
	return t
}

// loop runs the phases handed to the worker until it is stopped.
func (w *teamWorker) loop() {
	for {
		w.await()
		it := w.item
		w.item = teamItem{} // hold no reference to the Batched while idle
		w.pending.Store(0)
		if it.phase == phaseStop {
			return
		}
		it.b.wakeChildren(it)
		it.b.work(it.k, it.phase)
		it.wg.Done()
	}
}

// await returns when an item is pending: it polls for spinBudget, then
// blocks on the channel.
func (w *teamWorker) await() {
	start := time.Now()
	for i := 1; ; i++ {
		if w.pending.Load() != 0 {
			return
		}
		if i%64 == 0 {
			if time.Since(start) > spinBudget {
				break
			}
			runtime.Gosched()
		}
	}
	w.parked.Store(1)
	if w.pending.Load() != 0 {
		if w.parked.Swap(0) == 1 {
			return // nobody saw the worker parked: no send comes
		}
		// the waker saw it parked and sends (or has sent)
	}
	<-w.wake
}

// give hands it to the worker.
func (w *teamWorker) give(it teamItem) {
	w.item = it
	w.pending.Store(1)
	if w.parked.Swap(0) == 1 {
		w.wake <- struct{}{}
	}
}

// acquire registers a user of the team.
func (t *team) acquire() {
	t.umu.Lock()
	t.users++
	t.umu.Unlock()
}

// release unregisters a user; the last stops the goroutines.
func (t *team) release() {
	t.umu.Lock()
	defer t.umu.Unlock()
	t.users--
	if t.users > 0 || t.workers == nil {
		return
	}
	for _, w := range t.workers {
		w.give(teamItem{phase: phaseStop})
	}
	t.workers = nil
}

// useTeam makes b run its phases on t (releasing its previous team),
// and stops t's goroutines when b is closed or becomes unreachable,
// unless other programs still use t.
func (b *Batched) useTeam(t *team) {
	if b.team != nil {
		b.teamCleanup.Stop()
		b.team.release()
	}
	t.acquire()
	b.team = t
	b.teamCleanup = runtime.AddCleanup(b, (*team).release, t)
}

// ShareWorkers makes b and other run their batch slices on the same
// worker goroutines: the larger of their two sets serves both, and the
// other set is stopped. A fine-tuning step runs the teacher's and the
// student's programs one after the other, several phases each; with one
// set of workers, a worker that has just finished a phase of one program
// is still polling (see spinBudget) when the next phase of the other
// starts, instead of being woken from a blocked state. Calls to b and
// other are serialized with each other (one waits while the other runs),
// so they should not be made from two goroutines expecting them to
// overlap. Results do not change.
func (b *Batched) ShareWorkers(other *Batched) error {
	if b == other {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	other.mu.Lock()
	defer other.mu.Unlock()
	if b.team == nil || other.team == nil {
		return errors.New("share workers: program is closed")
	}
	if len(b.team.workers) >= len(other.team.workers) {
		other.useTeam(b.team)
	} else {
		b.useTeam(other.team)
	}
	return nil
}

// do runs phase on the program's worker goroutines and returns the first
// error in slice order.
func (b *Batched) do(phase int) error {
	t := b.team
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(b.slices)
	if phase == phaseFunc {
		n = b.fnN
	}
	for i := range n {
		b.taken[i].Store(0)
	}
	t.wg.Add(b.workers - 1)
	b.wakeChildren(teamItem{b: b, k: 0, phase: phase, wg: &t.wg})
	b.work(0, phase)
	t.wg.Wait()
	for _, err := range b.err {
		if err != nil {
			return err
		}
	}
	return nil
}

// wakeChildren wakes workers 2k+1 and 2k+2 of the program's b.workers
// (those that exist) for its phase.
func (b *Batched) wakeChildren(it teamItem) {
	for c := 2*it.k + 1; c <= 2*it.k+2 && c < b.workers; c++ {
		b.team.workers[c-1].give(teamItem{b: b, k: c, phase: it.phase, wg: it.wg})
	}
}

// Parallel runs f(i) for every i in [0, n) on the program's W worker
// goroutines (the caller's included), worker g the indices [g*n/W,
// (g+1)*n/W) in order unless another worker takes some over (see claim),
// and returns when all are done: per-item work between the passes (an
// optimizer update, a loss over many tensors) then runs on workers that
// are awake instead of on goroutines started for it, and a caller that
// hands the same items to every call (an update of the same tensors at
// every step) finds each item's data in the cache of the core that last
// touched it. The first call with more items than any before allocates. Every f(i) must touch only its own data;
// what f writes to slot i does not depend on which goroutine ran it, so a
// caller that combines the slots in index order gets the same bits
// whatever the number of workers. With one worker f runs on the caller's
// goroutine, in index order.
func (b *Batched) Parallel(n int, f func(i int)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.workers <= 1 || n <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	if len(b.taken) < n {
		b.taken = make([]atomic.Int32, n)
	}
	b.fn, b.fnN = f, n
	_ = b.do(phaseFunc) // f reports no errors
	b.fn = nil
}
