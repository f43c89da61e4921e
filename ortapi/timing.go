package ortapi

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Clock returns a monotonic reading; a run's time is the difference of the
// readings before and after it.
type Clock func() time.Duration

// WallClock returns a clock of elapsed (wall) time.
func WallClock() Clock {
	start := time.Now()
	return func() time.Duration { return time.Since(start) }
}

// TimingConfig controls Interleave. The zero value is usable.
type TimingConfig struct {
	// Warmup is the number of untimed runs of each candidate before timing
	// (0 means 3; negative means none).
	Warmup int
	// MinRounds is the least number of timed rounds (0 means 10).
	MinRounds int
	// MaxRounds is the most (0 means 200).
	MaxRounds int
	// Budget, when positive, ends timing after the round in which the
	// timed rounds' total elapsed time passes it (MinRounds still apply).
	Budget time.Duration
	// Tolerance is the relative gap below which two candidates count as
	// equal (0 means 0.02). Timing stops early, after MinRounds, when
	// every candidate's paired ratio to candidate 0 is clear: its 95%
	// interval lies wholly below 1-Tolerance, wholly above 1+Tolerance, or
	// wholly inside [1-Tolerance, 1+Tolerance].
	Tolerance float64
	// Clock measures each run (nil means WallClock).
	Clock Clock
	// ConcurrentWarmup, when above 1, runs the warm-up of up to this many
	// candidates at once (each candidate's own runs in order). Warm-up runs
	// are not timed, so on a machine with spare cores this only saves wall
	// time; a big model's first runs at a new batch size are the slowest
	// (ONNX Runtime allocating and touching its buffers).
	ConcurrentWarmup int
}

func (c TimingConfig) withDefaults() TimingConfig {
	if c.Warmup == 0 {
		c.Warmup = 3
	}
	if c.MinRounds <= 0 {
		c.MinRounds = 10
	}
	if c.MaxRounds <= 0 {
		c.MaxRounds = 200
	}
	c.MaxRounds = max(c.MaxRounds, c.MinRounds)
	if c.Tolerance <= 0 {
		c.Tolerance = 0.02
	}
	if c.Clock == nil {
		c.Clock = WallClock()
	}
	return c
}

// Timings holds the measured times of interleaved candidates.
type Timings struct {
	// Samples[i][k] is candidate i's time in round k.
	Samples [][]time.Duration
	// Early reports that timing stopped before MaxRounds because every
	// comparison was clear (see TimingConfig.Tolerance).
	Early bool
}

// Rounds returns the number of timed rounds.
func (t *Timings) Rounds() int {
	if len(t.Samples) == 0 {
		return 0
	}
	return len(t.Samples[0])
}

// Median returns candidate i's median time.
func (t *Timings) Median(i int) time.Duration { return Median(t.Samples[i]) }

// Ratio returns the paired ratio of candidate i's times to candidate
// base's, round by round (see PairedRatio).
func (t *Timings) Ratio(i, base int) Ratio { return PairedRatio(t.Samples[i], t.Samples[base]) }

// Interleave times runs against each other: after cfg.Warmup untimed runs
// of each, it runs them in rounds, one run of each candidate per round,
// the order rotating from round to round (A B, B A, A B, ... for two), so
// that drifts in the machine's speed affect all candidates alike. It stops
// after cfg.MaxRounds rounds, when cfg.Budget is spent, or early when every
// comparison with candidate 0 is clear. The first error of a run ends it.
func Interleave(cfg TimingConfig, runs ...func() error) (*Timings, error) {
	if len(runs) == 0 {
		return nil, fmt.Errorf("interleave: no candidates")
	}
	cfg = cfg.withDefaults()
	if err := warmUp(cfg, runs); err != nil {
		return nil, err
	}
	t := &Timings{Samples: make([][]time.Duration, len(runs))}
	var spent time.Duration
	for k := 0; k < cfg.MaxRounds; k++ {
		for j := range runs {
			i := (j + k) % len(runs)
			start := cfg.Clock()
			err := runs[i]()
			d := cfg.Clock() - start
			if err != nil {
				return nil, fmt.Errorf("round %d, candidate %d: %w", k, i, err)
			}
			t.Samples[i] = append(t.Samples[i], d)
			spent += d
		}
		if k+1 < cfg.MinRounds {
			continue
		}
		if cfg.Budget > 0 && spent >= cfg.Budget {
			break
		}
		if t.clear(cfg.Tolerance) {
			t.Early = k+1 < cfg.MaxRounds
			break
		}
	}
	return t, nil
}

// warmUp runs each candidate cfg.Warmup times, up to cfg.ConcurrentWarmup
// candidates at once.
func warmUp(cfg TimingConfig, runs []func() error) error {
	errs := make([]error, len(runs))
	sem := make(chan struct{}, max(cfg.ConcurrentWarmup, 1))
	var wg sync.WaitGroup
	for i, run := range runs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			for w := 0; w < cfg.Warmup; w++ {
				if err := run(); err != nil {
					errs[i] = fmt.Errorf("warm-up of candidate %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// clear reports whether every candidate's ratio to candidate 0 is clearly
// faster, slower or equal within tol.
func (t *Timings) clear(tol float64) bool {
	for i := 1; i < len(t.Samples); i++ {
		if t.Ratio(i, 0).Verdict(tol) == Unclear {
			return false
		}
	}
	return true
}

// Median returns the median of d (the mean of the two middle values when
// len(d) is even; 0 for none).
func Median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Ratio summarizes paired ratios num[k]/den[k].
type Ratio struct {
	// Median is the median of the ratios.
	Median float64
	// Low and High bound a distribution-free 95% confidence interval of
	// the median: the order statistics of ranks n/2 ∓ 0.98·√n (1.96 times
	// the standard deviation √n/2 of a binomial(n, 1/2) count), clamped to
	// the smallest and largest ratio.
	Low, High float64
	// N is the number of pairs.
	N int
}

// Verdicts of a Ratio.
const (
	Unclear = iota // the interval straddles a tolerance bound
	Faster         // the interval lies below 1-tol
	Slower         // the interval lies above 1+tol
	Same           // the interval lies within [1-tol, 1+tol]
)

// Verdict classifies the ratio against 1 with tolerance tol.
func (r Ratio) Verdict(tol float64) int {
	switch {
	case r.N == 0:
		return Unclear
	case r.High < 1-tol:
		return Faster
	case r.Low > 1+tol:
		return Slower
	case r.Low >= 1-tol && r.High <= 1+tol:
		return Same
	}
	return Unclear
}

// PairedRatio returns the median and 95% interval of num[k]/den[k] over
// the pairs with a positive denominator. Pairing rounds cancels changes of
// the machine's speed that affect both runs of a round alike.
func PairedRatio(num, den []time.Duration) Ratio {
	var r []float64
	for k := 0; k < len(num) && k < len(den); k++ {
		if den[k] > 0 {
			r = append(r, float64(num[k])/float64(den[k]))
		}
	}
	n := len(r)
	if n == 0 {
		return Ratio{}
	}
	slices.Sort(r)
	med := r[n/2]
	if n%2 == 0 {
		med = (r[n/2-1] + r[n/2]) / 2
	}
	half := 0.98 * math.Sqrt(float64(n))
	lo := int(math.Floor(float64(n)/2 - half)) // 1-based ranks
	hi := int(math.Ceil(float64(n)/2 + half))
	lo = min(max(lo, 1), n)
	hi = min(max(hi, 1), n)
	return Ratio{Median: med, Low: r[lo-1], High: r[hi-1], N: n}
}
