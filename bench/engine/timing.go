package main

// Timing: CPU time, profiles, timed loops and the statistics of repetitions.

import (
	"fmt"
	"math"
	"os"
	"runtime/pprof"
	"sort"

	"time"

	"github.com/lprconv/lprconv/internal/cputime"
)

// cpuTime returns the process's user+system CPU time (0 where unknown).
func cpuTime() time.Duration {
	d, _ := cputime.Process()
	return d
}

// startProfile starts a CPU profile into path (nothing when path is empty)
// and returns the function that stops it.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile %s: %w", path, err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// sample is one timed repetition.
type sample struct {
	iters int
	wall  time.Duration
	cpu   time.Duration
}

// timeLoop runs f until at least min has passed and returns the repetition.
func timeLoop(min time.Duration, f func() error) (sample, error) {
	c0, t0 := cpuTime(), time.Now()
	n := 0
	for {
		if err := f(); err != nil {
			return sample{}, err
		}
		n++
		if el := time.Since(t0); el >= min {
			return sample{iters: n, wall: el, cpu: cpuTime() - c0}, nil
		}
	}
}

// stats summarizes repetitions of a runner that processes batch images
// per iteration.
type stats struct {
	rates  []float64 // images/s per repetition (wall clock)
	cpuPer []float64 // CPU ms per image per repetition
}

func (s *stats) add(x sample, batch int) {
	s.rates = append(s.rates, float64(x.iters*batch)/x.wall.Seconds())
	s.cpuPer = append(s.cpuPer, 1e3*x.cpu.Seconds()/float64(x.iters*batch))
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// pairedRatio returns the median over repetitions of a[i]/b[i]: a and b
// ran back to back in each repetition, so a change of the machine's load
// between repetitions cancels in each ratio.
func pairedRatio(a, b []float64) float64 {
	r := make([]float64, min(len(a), len(b)))
	for i := range r {
		r[i] = a[i] / b[i]
	}
	return median(r)
}

// spread returns (max-min)/median of v, a crude noise indicator.
func spread(v []float64) float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return (hi - lo) / median(v)
}
