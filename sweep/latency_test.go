package sweep

import (
	"errors"
	"math"
	"strings"
	"testing"

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

func TestMedianLatencyCallsAndErrors(t *testing.T) {
	calls := 0
	ms, err := medianLatency(func() error { calls++; return nil }, 3, 7)
	if err != nil || calls != 10 || ms < 0 || math.IsNaN(ms) {
		t.Errorf("got %v ms, err %v, %d calls; want 10 calls", ms, err, calls)
	}
	boom := errors.New("boom")
	calls = 0
	_, err = medianLatency(func() error {
		calls++
		if calls == 5 {
			return boom
		}
		return nil
	}, 3, 7)
	if !errors.Is(err, boom) || calls != 5 {
		t.Errorf("err %v after %d calls, want boom after 5", err, calls)
	}
}

func TestLatencyInput(t *testing.T) {
	a, b := latencyInput(1000, 0), latencyInput(1000, 0)
	c := latencyInput(1000, 1)
	same, lo, hi := true, float32(1), float32(-1)
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("latencyInput is not deterministic")
		}
		if a[i] != c[i] {
			same = false
		}
		lo, hi = min(lo, a[i]), max(hi, a[i])
	}
	if same {
		t.Error("streams 0 and 1 give the same input")
	}
	if lo < -1 || hi >= 1 || lo > -0.9 || hi < 0.9 {
		t.Errorf("values span [%v, %v], want about [-1, 1)", lo, hi)
	}
}

// fakeMeter returns a fixed latency per path.
type fakeMeter map[string]float64

func (f fakeMeter) Measure(path string) (float64, error) {
	ms, ok := f[path]
	if !ok {
		return 0, errors.New("no such model")
	}
	return ms, nil
}

func TestMeasureLatencies(t *testing.T) {
	s := &report.Sweep{Rows: []report.Row{{Config: "a", Model: "a.onnx"}, {Config: "b", Model: "b.onnx"}}}
	m := fakeMeter{"orig.onnx": 2, "a.onnx": 1.5, "b.onnx": 3}
	if err := measureLatencies(m, "orig.onnx", s, newLogger(nil)); err != nil {
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
	delete(m, "b.onnx")
	err := measureLatencies(m, "orig.onnx", s, newLogger(nil))
	if err == nil || !strings.Contains(err.Error(), "b.onnx") {
		t.Errorf("err = %v, want the failing model named", err)
	}
}
