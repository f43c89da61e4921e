package sweep

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/lprconv/lprconv/report"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{1, 100, 2, 2, 2}, 2},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing should be NaN")
	}
}

// fakeClock is a clock that only runners advance.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// fakeRunner takes a fixed time per run on a fake clock, optionally
// failing at one run.
type fakeRunner struct {
	clock  *fakeClock
	d      time.Duration
	runs   int
	failAt int
	closed bool
}

func (r *fakeRunner) Run() error {
	r.runs++
	if r.runs == r.failAt {
		return errors.New("boom")
	}
	r.clock.t = r.clock.t.Add(r.d)
	return nil
}

func (r *fakeRunner) Close() error { r.closed = true; return nil }

// fakeMeter opens fake runners with a fixed run time per path.
type fakeMeter struct {
	clock   *fakeClock
	d       map[string]time.Duration
	runners []*fakeRunner
}

func (f *fakeMeter) Open(path string) (LatencyRunner, error) {
	d, ok := f.d[path]
	if !ok {
		return nil, errors.New("no such model")
	}
	r := &fakeRunner{clock: f.clock, d: d}
	f.runners = append(f.runners, r)
	return r, nil
}

func TestTimeRunners(t *testing.T) {
	clock := &fakeClock{}
	fast := &fakeRunner{clock: clock, d: 100 * time.Microsecond}
	slow := &fakeRunner{clock: clock, d: 50 * time.Millisecond}
	o := LatencyOptions{Warmup: 2, Runs: 20, Rounds: 4, MinTime: 100 * time.Millisecond}
	ms, err := timeRunners([]LatencyRunner{fast, slow}, o, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	if ms[0] != 0.1 || ms[1] != 50 {
		t.Errorf("medians %v, want [0.1 50]", ms)
	}
	// The fast model needs 1000 runs to reach MinTime (250 per round); the
	// slow one gets the minimum of 20 (5 per round); plus the warmups.
	if fast.runs != 2+1000 || slow.runs != 2+20 {
		t.Errorf("runs %d and %d, want 1002 and 22", fast.runs, slow.runs)
	}
	bad := &fakeRunner{clock: clock, d: time.Millisecond, failAt: 7}
	_, err = timeRunners([]LatencyRunner{fast, bad}, o, clock.now)
	var re runnerErr
	if !errors.As(err, &re) || re.i != 1 {
		t.Errorf("err = %v, want runner 1's error", err)
	}
}

func TestMeasureLatencies(t *testing.T) {
	clock := &fakeClock{}
	m := &fakeMeter{clock: clock, d: map[string]time.Duration{"orig.onnx": 2 * time.Millisecond, "a.onnx": 1500 * time.Microsecond, "b.onnx": 3 * time.Millisecond}}
	s := &report.Sweep{Rows: []report.Row{{Config: "a", Model: "a.onnx"}, {Config: "b", Model: "b.onnx"}}}
	o := LatencyOptions{Warmup: 1, Runs: 3, Rounds: 3, MinTime: time.Millisecond, clock: clock.now}
	if err := measureLatencies(m, o, "orig.onnx", s, newLogger(nil)); err != nil {
		t.Fatal(err)
	}
	if *s.Original.LatencyMs != 2 {
		t.Errorf("original latency %v, want 2", *s.Original.LatencyMs)
	}
	for i, want := range [][2]float64{{1.5, 0.75}, {3, 1.5}} {
		r := s.Rows[i]
		if *r.LatencyMs != want[0] || *r.LatencyRatio != want[1] {
			t.Errorf("row %d latency %v ratio %v, want %v", i, *r.LatencyMs, *r.LatencyRatio, want)
		}
	}
	for _, r := range m.runners {
		if !r.closed {
			t.Error("runner left open")
		}
	}
	delete(m.d, "b.onnx")
	err := measureLatencies(m, o, "orig.onnx", s, newLogger(nil))
	if err == nil || !strings.Contains(err.Error(), "b.onnx") {
		t.Errorf("err = %v, want the failing model named", err)
	}
}
