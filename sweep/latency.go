package sweep

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/lprconv/lprconv/report"
)

// ErrLatencyUnavailable is returned by NewLatencyMeter in binaries built
// without ONNX Runtime support.
var ErrLatencyUnavailable = errors.New("latency unavailable: this lprconv was built without ONNX Runtime (build with -tags ort)")

// LatencyMeter measures the inference latency of ONNX model files.
type LatencyMeter interface {
	// Measure returns the median latency in milliseconds of one inference
	// at batch size 1 of the model at path.
	Measure(path string) (float64, error)
}

// LatencyOptions configure NewLatencyMeter. Zero fields take defaults.
type LatencyOptions struct {
	// Warmup runs are made and discarded before timing (default 5).
	Warmup int
	// Runs is the number of timed runs whose median is reported
	// (default 30).
	Runs int
	// Threads is ONNX Runtime's intra-op thread count (default 1).
	Threads int
}

func (o LatencyOptions) withDefaults() LatencyOptions {
	if o.Warmup <= 0 {
		o.Warmup = 5
	}
	if o.Runs <= 0 {
		o.Runs = 30
	}
	if o.Threads <= 0 {
		o.Threads = 1
	}
	return o
}

// medianLatency calls run warmup times untimed, then runs times timed, and
// returns the median duration in milliseconds.
func medianLatency(run func() error, warmup, runs int) (float64, error) {
	for i := 0; i < warmup; i++ {
		if err := run(); err != nil {
			return 0, err
		}
	}
	ms := make([]float64, runs)
	for i := range ms {
		start := time.Now()
		if err := run(); err != nil {
			return 0, err
		}
		ms[i] = float64(time.Since(start).Nanoseconds()) / 1e6
	}
	return median(ms), nil
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

// measureLatencies measures the original model and then every row's model
// with m, one after another, and fills in latency and its ratio to the
// original. Measuring all of them in one pass, after the configurations
// have finished, keeps the comparison fair: same process, same machine
// load, and the original measured in the same run.
func measureLatencies(m LatencyMeter, original string, s *report.Sweep, log *logger) error {
	log.printf("sweep: measuring latency of %s", original)
	base, err := m.Measure(original)
	if err != nil {
		return fmt.Errorf("latency of %s: %w", original, err)
	}
	s.Original.LatencyMs = &base
	for i := range s.Rows {
		r := &s.Rows[i]
		log.printf("sweep: measuring latency of %s (%d of %d)", r.Config, i+1, len(s.Rows))
		ms, err := m.Measure(r.Model)
		if err != nil {
			return fmt.Errorf("latency of %s: %w", r.Model, err)
		}
		ratio := ms / base
		r.LatencyMs, r.LatencyRatio = &ms, &ratio
	}
	return nil
}

// latencyInput returns n deterministic values in [-1, 1) for a timing
// input (a linear congruential sequence seeded by stream).
func latencyInput(n int, stream uint32) []float32 {
	out := make([]float32, n)
	x := 2463534242 + stream*2654435761
	for i := range out {
		x = x*1664525 + 1013904223
		out[i] = float32(x>>8)/float32(1<<23) - 1
	}
	return out
}
