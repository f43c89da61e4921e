package ortapi

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func ms(v ...float64) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x * float64(time.Millisecond))
	}
	return out
}

func TestMedian(t *testing.T) {
	cases := []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{ms(5), ms(5)[0]},
		{ms(3, 1, 2), ms(2)[0]},
		{ms(4, 1, 3, 2), ms(2.5)[0]},
		{ms(9, 1, 1, 1, 100), ms(1)[0]},
	}
	for _, tc := range cases {
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestPairedRatio(t *testing.T) {
	// 25 pairs with ratios 0.76, 0.77, ..., 1.00 (shuffled by the pairing
	// of a constant denominator with permuted numerators). n = 25:
	// half-width 0.98*5 = 4.9, ranks floor(12.5-4.9) = 7 and
	// ceil(12.5+4.9) = 18, i.e. ratios 0.82 and 0.93; median rank 13 = 0.88.
	var num, den []time.Duration
	for i := 0; i < 25; i++ {
		j := (i * 7) % 25
		num = append(num, time.Duration(76+j)*time.Millisecond)
		den = append(den, 100*time.Millisecond)
	}
	r := PairedRatio(num, den)
	near := func(a, b float64) bool { return a-b < 1e-12 && b-a < 1e-12 }
	if r.N != 25 || !near(r.Median, 0.88) || !near(r.Low, 0.82) || !near(r.High, 0.93) {
		t.Errorf("PairedRatio = %+v, want median 0.88 in [0.82, 0.93] over 25", r)
	}
	if r.Verdict(0.02) != Faster {
		t.Errorf("verdict %d, want Faster", r.Verdict(0.02))
	}
	// Pairing cancels a common drift: both halve from round to round.
	num, den = ms(8, 4, 2, 1), ms(10, 5, 2.5, 1.25)
	if r := PairedRatio(num, den); !near(r.Median, 0.8) || !near(r.Low, 0.8) || !near(r.High, 0.8) {
		t.Errorf("drifting pairs: %+v, want exactly 0.8", r)
	}
	// Zero denominators are skipped; no pairs give the zero Ratio.
	if r := PairedRatio(ms(1, 2), ms(0, 1)); r.N != 1 || r.Median != 2 {
		t.Errorf("zero denominator: %+v", r)
	}
	if r := PairedRatio(nil, nil); r != (Ratio{}) || r.Verdict(0.02) != Unclear {
		t.Errorf("no pairs: %+v", r)
	}
	verdicts := []struct {
		r    Ratio
		want int
	}{
		{Ratio{Median: 1.1, Low: 1.05, High: 1.2, N: 9}, Slower},
		{Ratio{Median: 1.0, Low: 0.99, High: 1.01, N: 9}, Same},
		{Ratio{Median: 1.0, Low: 0.95, High: 1.01, N: 9}, Unclear},
		{Ratio{Median: 0.9, Low: 0.85, High: 0.97, N: 9}, Faster},
	}
	for _, v := range verdicts {
		if got := v.r.Verdict(0.02); got != v.want {
			t.Errorf("Verdict(%+v) = %d, want %d", v.r, got, v.want)
		}
	}
}

// fakeClock is a Clock that candidates advance by their simulated cost.
type fakeClock struct{ now time.Duration }

func (c *fakeClock) clock() Clock { return func() time.Duration { return c.now } }

func TestInterleave(t *testing.T) {
	t.Run("clear gap stops at MinRounds", func(t *testing.T) {
		c := &fakeClock{}
		var order strings.Builder
		a := func() error { order.WriteByte('A'); c.now += 10 * time.Millisecond; return nil }
		b := func() error { order.WriteByte('B'); c.now += 8 * time.Millisecond; return nil }
		tm, err := Interleave(TimingConfig{Warmup: 1, MinRounds: 6, MaxRounds: 50, Clock: c.clock()}, a, b)
		if err != nil {
			t.Fatal(err)
		}
		if got := order.String(); got != "AB"+"ABBAABBAABBA" {
			t.Errorf("run order %q, want warm-up AB then rounds alternating AB, BA", got)
		}
		if tm.Rounds() != 6 || !tm.Early {
			t.Errorf("rounds %d early %v, want 6 and early", tm.Rounds(), tm.Early)
		}
		if r := tm.Ratio(1, 0); r.Median != 0.8 || r.Verdict(0.02) != Faster {
			t.Errorf("ratio %+v, want 0.8, faster", r)
		}
		if tm.Median(0) != 10*time.Millisecond || tm.Median(1) != 8*time.Millisecond {
			t.Errorf("medians %v %v", tm.Median(0), tm.Median(1))
		}
	})
	t.Run("noise within tolerance runs to MaxRounds", func(t *testing.T) {
		c := &fakeClock{}
		n := 0
		a := func() error { c.now += 10 * time.Millisecond; return nil }
		// b alternates 10% faster and 10% slower: its median ratio is 1
		// but its interval straddles the 2% tolerance bounds.
		b := func() error {
			n++
			if n%2 == 0 {
				c.now += 9 * time.Millisecond
			} else {
				c.now += 11 * time.Millisecond
			}
			return nil
		}
		tm, err := Interleave(TimingConfig{Warmup: -1, MinRounds: 5, MaxRounds: 40, Clock: c.clock()}, a, b)
		if err != nil {
			t.Fatal(err)
		}
		if tm.Rounds() != 40 || tm.Early {
			t.Errorf("rounds %d early %v, want 40, not early", tm.Rounds(), tm.Early)
		}
		if r := tm.Ratio(1, 0); r.Median != 1 || r.Verdict(0.02) != Unclear {
			t.Errorf("ratio %+v, want median 1, unclear", r)
		}
	})
	t.Run("budget", func(t *testing.T) {
		c := &fakeClock{}
		n := 0
		a := func() error { c.now += time.Second; return nil }
		b := func() error { n++; c.now += time.Duration(900+200*(n%2)) * time.Millisecond; return nil }
		tm, err := Interleave(TimingConfig{Warmup: -1, MinRounds: 3, MaxRounds: 1000, Budget: 10 * time.Second, Clock: c.clock()}, a, b)
		if err != nil {
			t.Fatal(err)
		}
		if tm.Rounds() != 5 || tm.Early {
			t.Errorf("rounds %d early %v, want 5 (10 s spent), not early", tm.Rounds(), tm.Early)
		}
	})
	t.Run("error", func(t *testing.T) {
		boom := errors.New("boom")
		k := 0
		f := func() error {
			k++
			if k == 5 {
				return boom
			}
			return nil
		}
		if _, err := Interleave(TimingConfig{Warmup: 2}, f); !errors.Is(err, boom) || !strings.Contains(err.Error(), "round") {
			t.Errorf("error %v, want the run's error in a round", err)
		}
		if _, err := Interleave(TimingConfig{}); err == nil {
			t.Error("Interleave with no candidates succeeded")
		}
	})
}

// TestConcurrentWarmup: with ConcurrentWarmup 2 the two candidates' warm-up
// runs overlap (each first run waits until the other has started), each
// candidate still warms up Warmup times before any timed round, and a
// failing warm-up is reported.
func TestConcurrentWarmup(t *testing.T) {
	started := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	var counts [2]atomic.Int32
	timedBeforeWarm := atomic.Bool{}
	run := func(i int) func() error {
		return func() error {
			n := counts[i].Add(1)
			if n == 1 {
				close(started[i])
				select {
				case <-started[1-i]:
				case <-time.After(5 * time.Second):
					return errors.New("the other candidate's warm-up did not start alongside")
				}
			}
			if n > 2 && counts[1-i].Load() < 2 {
				timedBeforeWarm.Store(true)
			}
			return nil
		}
	}
	tm, err := Interleave(TimingConfig{Warmup: 2, MinRounds: 3, MaxRounds: 3, ConcurrentWarmup: 2}, run(0), run(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Samples[0]) != 3 || counts[0].Load() != 5 || counts[1].Load() != 5 || timedBeforeWarm.Load() {
		t.Errorf("samples %d, runs %d and %d, timed before warm %v", len(tm.Samples[0]), counts[0].Load(), counts[1].Load(), timedBeforeWarm.Load())
	}
	fail := func() error { return errors.New("boom") }
	if _, err := Interleave(TimingConfig{Warmup: 1, MinRounds: 1, ConcurrentWarmup: 2}, func() error { return nil }, fail); err == nil || !strings.Contains(err.Error(), "warm-up of candidate 1: boom") {
		t.Errorf("error %v, want the failing warm-up", err)
	}
}
