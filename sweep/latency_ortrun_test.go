package sweep

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/report"
	"github.com/lprconv/lprconv/sweep/ortlatency"
)

// TestRunWithORTLatency runs a small sweep of the fixture with latency
// measured in ONNX Runtime (the meter lprconv sweep uses), checking that every model is timed and the ratios are computed
// against the original measured in the same run.
func TestRunWithORTLatency(t *testing.T) {
	m, err := ortlatency.New(testutil.RequireORT(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	o := fixtureOptions(t)
	o.Eval, o.Random = "", 8
	p, err := NewPipeline(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out := t.TempDir()
	res, err := Run(context.Background(), Options{
		Model: o.Model, Out: out, Configs: []Config{{Residual: "none", Ratio: 0.25}, {Residual: "identity", Ratio: 0.125}}, Jobs: 1,
		Latency: ORTMeter(m), LatencyOptions: LatencyOptions{Warmup: 2, Runs: 5, Rounds: 2, MinTime: 5 * time.Millisecond},
	}, p)
	if err != nil {
		t.Fatal(err)
	}
	base := res.Sweep.Original.LatencyMs
	if base == nil || !(*base > 0) || math.IsInf(*base, 0) {
		t.Fatalf("original latency %v", base)
	}
	for _, r := range res.Sweep.Rows {
		if r.LatencyMs == nil || r.LatencyRatio == nil || !(*r.LatencyMs > 0) || *r.LatencyRatio != *r.LatencyMs / *base {
			t.Errorf("%s: latency %v ratio %v (original %v)", r.Config, r.LatencyMs, r.LatencyRatio, *base)
		}
	}
	for _, plot := range []string{report.PlotLatencyMACs, report.PlotAccuracyLatency} {
		if _, err := os.Stat(filepath.Join(out, plot)); err != nil {
			t.Error(err)
		}
	}
}
