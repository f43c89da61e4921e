package sweep

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/pipeline"
)

// latencyBudget is the configuration of a latency budget of 0.95.
var latencyBudget = Config{Residual: "diag", Budget: pipeline.Budget{Resource: pipeline.LatencyResource, Fraction: 0.95}}

// TestLatencyBudgetNeedsRuntime: a sweep with latency budgets whose ONNX
// Runtime cannot be loaded fails when the pipeline is made, in one line
// naming the flags; a pipeline made without Latency refuses to run a
// latency budget with the same message.
func TestLatencyBudgetNeedsRuntime(t *testing.T) {
	o := fixtureOptions(t)
	o.Eval, o.Random = "", 4
	o.Latency = &LatencyBudgets{Batches: []int64{1}}
	o.ORTLib = filepath.Join(t.TempDir(), "libonnxruntime.so")
	if p, err := NewPipeline(o); err == nil {
		p.Close()
		t.Fatal("NewPipeline with a missing runtime: no error")
	} else if msg := err.Error(); !strings.HasPrefix(msg, errNoLatencyRuntime) || strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error %q", msg)
	}
	o.Latency, o.ORTLib = nil, ""
	p, err := NewPipeline(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Original(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err = p.Evaluate(context.Background(), latencyBudget, filepath.Join(t.TempDir(), "out.onnx"))
	if err == nil || !strings.Contains(err.Error(), errNoLatencyRuntime) || !strings.Contains(err.Error(), latencyBudget.Name()) {
		t.Errorf("latency budget without Latency: %v", err)
	}
}

// TestRunLatencyBudgetORT runs a sweep of the fixture with a uniform
// ratio and --budgets latency=0.95 timed in ONNX Runtime at batch 64
// (where the fixture's modules pay): the budget row is there, its model
// file has the row's ranks, and the log shows that its ranks came from a
// table timed in the runtime with the random-input sensitivity. No
// timings are asserted.
func TestRunLatencyBudgetORT(t *testing.T) {
	o := fixtureOptions(t)
	o.Eval, o.Random, o.Multiple, o.ChannelAlign = "", 8, 16, 4
	o.ORTLib = testutil.RequireORT(t)
	o.Latency = &LatencyBudgets{Batches: []int64{64}, Threads: 1}
	var log bytes.Buffer
	o.Log = &log
	p, err := NewPipeline(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out := t.TempDir()
	uniform := Config{Residual: "diag", Ratio: 0.25}
	res, err := Run(context.Background(), Options{Model: o.Model, Out: out, Configs: []Config{uniform, latencyBudget}, Jobs: 1}, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Unmet) > 0 {
		t.Fatalf("unmet budgets %v (log:\n%s)", res.Unmet, log.String())
	}
	var found bool
	for _, r := range res.Sweep.Rows {
		if r.Config != latencyBudget.Name() {
			continue
		}
		found = true
		if r.Budget != "latency=0.95" || r.Agreement == nil {
			t.Errorf("row %+v", r)
		}
		m, err := onnxio.Load(filepath.Join(out, latencyBudget.ModelFile(o.Model)))
		if err != nil {
			t.Fatal(err)
		}
		// The written model's LPR modules are the row's layers at their
		// ranks: a plan of it with nothing to replace finds them.
		s, err := convert.Inspect(m, convert.ShapeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Params != r.Params {
			t.Errorf("written model has %d parameters, the row says %d", s.Params, r.Params)
		}
	}
	if !found {
		t.Fatalf("no %s row in %+v", latencyBudget.Name(), res.Sweep.Rows)
	}
	for _, want := range []string{"(layer, rank) modules alone in ONNX Runtime", "at batch 64", "sensitivity (random)"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}
