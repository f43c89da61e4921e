package sweep

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/lprconv/lprconv/report"
)

// LatencyMeter loads ONNX model files for timing.
type LatencyMeter interface {
	// Open loads the model at path, ready to run one inference at batch
	// size 1 on a fixed input.
	Open(path string) (LatencyRunner, error)
}

// LatencyMeterFunc adapts a function to LatencyMeter.
type LatencyMeterFunc func(path string) (LatencyRunner, error)

// Open calls f.
func (f LatencyMeterFunc) Open(path string) (LatencyRunner, error) { return f(path) }

// ORTMeter adapts an ONNX Runtime meter (package sweep/ortlatency, whose
// Open returns a concrete runner type) to LatencyMeter.
func ORTMeter[R LatencyRunner](m interface{ Open(string) (R, error) }) LatencyMeter {
	return LatencyMeterFunc(func(path string) (LatencyRunner, error) {
		r, err := m.Open(path)
		if err != nil {
			return nil, err
		}
		return r, nil
	})
}

// LatencyRunner runs one loaded model.
type LatencyRunner interface {
	// Run performs one inference.
	Run() error
	// Close releases the model.
	Close() error
}

// LatencyOptions configure latency measurement. Zero fields take defaults.
type LatencyOptions struct {
	// Warmup runs per model are made and discarded before timing
	// (default 5).
	Warmup int
	// Runs is the least number of timed runs per model (default 30).
	Runs int
	// Rounds is the number of passes over all models; each pass times
	// every model a few times, in a rotating order, so that a change of
	// machine load affects every model alike (default 10).
	Rounds int
	// MinTime is the least total timed duration per model; fast models get
	// more runs to reach it (default 250ms; at most maxRuns runs).
	MinTime time.Duration
	// Threads is ONNX Runtime's intra-op thread count (default 1).
	Threads int

	// clock replaces time.Now in tests.
	clock func() time.Time
}

// maxRuns caps the timed runs per model.
const maxRuns = 2000

func (o LatencyOptions) withDefaults() LatencyOptions {
	if o.Warmup <= 0 {
		o.Warmup = 5
	}
	if o.Runs <= 0 {
		o.Runs = 30
	}
	if o.Rounds <= 0 {
		o.Rounds = 10
	}
	if o.MinTime <= 0 {
		o.MinTime = 250 * time.Millisecond
	}
	if o.Threads <= 0 {
		o.Threads = 1
	}
	if o.clock == nil {
		o.clock = time.Now
	}
	return o
}

// measureLatencies times the original model and every row's model, all
// loaded at once and timed in interleaved rounds, and fills in each row's
// median latency and its ratio to the original's.
func measureLatencies(m LatencyMeter, opts LatencyOptions, original string, s *report.Sweep, log *logger) error {
	paths := []string{original}
	for _, r := range s.Rows {
		paths = append(paths, r.Model)
	}
	var runners []LatencyRunner
	defer func() {
		for _, r := range runners {
			r.Close()
		}
	}()
	for _, p := range paths {
		r, err := m.Open(p)
		if err != nil {
			return fmt.Errorf("latency of %s: %w", p, err)
		}
		runners = append(runners, r)
	}
	log.printf("sweep: measuring latency of %d models", len(paths))
	o := opts.withDefaults()
	ms, err := timeRunners(runners, o, o.clock)
	if err != nil {
		return fmt.Errorf("latency of %w", pathErr{paths, err})
	}
	base := ms[0]
	s.Original.LatencyMs = &base
	for i := range s.Rows {
		v, ratio := ms[i+1], ms[i+1]/base
		s.Rows[i].LatencyMs, s.Rows[i].LatencyRatio = &v, &ratio
	}
	return nil
}

// runnerErr is an error of the runner at index i.
type runnerErr struct {
	i   int
	err error
}

func (e runnerErr) Error() string { return e.err.Error() }
func (e runnerErr) Unwrap() error { return e.err }

// pathErr names the model of a runnerErr.
type pathErr struct {
	paths []string
	err   error
}

func (e pathErr) Error() string {
	var re runnerErr
	if errors.As(e.err, &re) {
		return e.paths[re.i] + ": " + re.err.Error()
	}
	return e.err.Error()
}
func (e pathErr) Unwrap() error { return e.err }

// timeRunners warms every runner up, then times them in o.Rounds rotating
// rounds, and returns each one's median run time in milliseconds. now is
// the clock.
func timeRunners(runners []LatencyRunner, o LatencyOptions, now func() time.Time) ([]float64, error) {
	perRound := make([]int, len(runners))
	for i, r := range runners {
		start := now()
		for k := 0; k < o.Warmup; k++ {
			if err := r.Run(); err != nil {
				return nil, runnerErr{i, err}
			}
		}
		per := now().Sub(start) / time.Duration(o.Warmup)
		runs := o.Runs
		if per > 0 {
			runs = max(runs, int(math.Ceil(float64(o.MinTime)/float64(per))))
		} else {
			runs = maxRuns
		}
		runs = min(runs, maxRuns)
		perRound[i] = max(1, (runs+o.Rounds-1)/o.Rounds)
	}
	samples := make([][]float64, len(runners))
	for round := 0; round < o.Rounds; round++ {
		for k := range runners {
			i := (k + round) % len(runners)
			for j := 0; j < perRound[i]; j++ {
				start := now()
				if err := runners[i].Run(); err != nil {
					return nil, runnerErr{i, err}
				}
				samples[i] = append(samples[i], float64(now().Sub(start).Nanoseconds())/1e6)
			}
		}
	}
	out := make([]float64, len(runners))
	for i, s := range samples {
		out[i] = median(s)
	}
	return out, nil
}

// median returns the middle value of xs (the mean of the two middle values
// when len(xs) is even), or NaN when xs is empty. xs is sorted in place.
func median(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return math.NaN()
	}
	sort.Float64s(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}
