package sweep

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lprconv/lprconv/pipeline"
	"github.com/lprconv/lprconv/report"
)

// fakeEvaluator stands in for the real pipeline: it writes a small model
// file and returns a row derived from the configuration, so that the
// orchestration (state, resumption, parallelism, report files) can be
// checked exactly.
type fakeEvaluator struct {
	fingerprint string
	fail        string // configuration name that fails
	infeasible  string // configuration name whose budget cannot be met
	calls       atomic.Int32
	running     atomic.Int32
	maxRunning  atomic.Int32
	gate        chan struct{} // when set, Evaluate waits for a token
	mu          sync.Mutex
	perConfig   map[string]int // Evaluate calls per configuration
}

func (f *fakeEvaluator) Original(context.Context) (Original, error) {
	return Original{
		Baseline: report.Baseline{Params: 1000, MACs: 5000, FileBytes: 4000},
		Spectra:  []report.LayerSpectrum{{Name: "pw1", C: 4, Singular: []float64{4, 3, 2, 1}}},
		Notes:    []string{"no labelled data"},
	}, nil
}

func (f *fakeEvaluator) Evaluate(ctx context.Context, cfg Config, modelPath string) (report.Row, error) {
	f.calls.Add(1)
	f.mu.Lock()
	if f.perConfig == nil {
		f.perConfig = map[string]int{}
	}
	f.perConfig[cfg.Name()]++
	f.mu.Unlock()
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		m := f.maxRunning.Load()
		if n <= m || f.maxRunning.CompareAndSwap(m, n) {
			break
		}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return report.Row{}, ctx.Err()
		}
	}
	if cfg.Name() == f.infeasible {
		return report.Row{}, fmt.Errorf("budget %s: %w", cfg.Budget, &pipeline.InfeasibleError{Smallest: 0.3, Target: cfg.Budget.Fraction})
	}
	if cfg.Name() == f.fail {
		return report.Row{}, errors.New("factorization failed")
	}
	if err := os.WriteFile(modelPath, []byte("model "+cfg.Name()), 0o644); err != nil {
		return report.Row{}, err
	}
	c := 4
	ratio := cfg.Ratio
	if cfg.HasBudget() {
		ratio = cfg.Budget.Fraction / 2
	}
	rank := int(float64(c)*ratio + 0.5)
	params := int64(1000 - 16 + 2*rank*c)
	return report.Row{
		Params: params, MACs: params * 5, FileBytes: params * 4,
		ParamsRatio: float64(params) / 1000, MACsRatio: float64(params) / 1000, FileRatio: float64(params) / 1000,
		Agreement: fptr(ratio), Cosine: fptr(0.5 + ratio/2),
		Layers: []report.LayerRank{{Name: "pw1", C: c, Rank: rank}},
	}, nil
}

func (f *fakeEvaluator) Fingerprint() string { return f.fingerprint }

func testConfigs(t *testing.T) []Config {
	t.Helper()
	ratios, err := ParseRatios("1/2,1/4")
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := Grid([]string{"diag", "none"}, ratios, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfgs
}

func modTimes(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = info.ModTime().UnixNano()
	}
	return out
}

func TestRunWritesEverythingAndResumes(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	cfgs := testConfigs(t)
	opts := Options{Model: "models/net.onnx", Out: out, Configs: cfgs, Jobs: 1}
	var progress strings.Builder
	opts.Progress = &progress
	ev := &fakeEvaluator{fingerprint: "fp1"}
	res, err := Run(context.Background(), opts, ev)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ran != 4 || res.Skipped != 0 || ev.calls.Load() != 4 {
		t.Fatalf("first run: ran %d skipped %d calls %d, want 4 0 4", res.Ran, res.Skipped, ev.calls.Load())
	}
	for _, name := range []string{"report.md", "results.csv", "results.json",
		report.PlotAccuracyParams, report.PlotAccuracyMACs, report.PlotSpectra,
		"net_diag_r0.5.onnx", "net_diag_r0.25.onnx", "net_none_r0.5.onnx", "net_none_r0.25.onnx",
		"state/diag_r0.5.json", "state/none_r0.25.json"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("missing output: %v", err)
		}
	}
	for i, row := range res.Sweep.Rows {
		if row.Config != cfgs[i].Name() || row.Residual != cfgs[i].Residual || row.RankRatio != cfgs[i].Ratio {
			t.Errorf("row %d = %s/%s/%v, want %s", i, row.Config, row.Residual, row.RankRatio, cfgs[i].Name())
		}
		if row.Model != filepath.Join(out, cfgs[i].ModelFile("net.onnx")) {
			t.Errorf("row %d model = %s", i, row.Model)
		}
	}
	for _, want := range []string{"diag_r0.5 running (4 of 4 remaining)", "none_r0.25 finished in", "(4 of 4 done, 0 remaining)"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, progress.String())
		}
	}
	before := modTimes(t, out)
	stateBefore := modTimes(t, filepath.Join(out, StateDir))

	// A second run computes nothing and leaves models and state untouched.
	ev2 := &fakeEvaluator{fingerprint: "fp1"}
	res2, err := Run(context.Background(), opts, ev2)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Ran != 0 || res2.Skipped != 4 || ev2.calls.Load() != 0 {
		t.Fatalf("second run: ran %d skipped %d calls %d, want 0 4 0", res2.Ran, res2.Skipped, ev2.calls.Load())
	}
	if !reflect.DeepEqual(res2.Sweep.Rows, res.Sweep.Rows) {
		t.Errorf("resumed rows differ:\n%+v\n%+v", res2.Sweep.Rows, res.Sweep.Rows)
	}
	after := modTimes(t, out)
	for _, c := range cfgs {
		f := c.ModelFile("net.onnx")
		if before[f] != after[f] {
			t.Errorf("%s was rewritten by the second run", f)
		}
	}
	if !reflect.DeepEqual(stateBefore, modTimes(t, filepath.Join(out, StateDir))) {
		t.Error("state files were rewritten by the second run")
	}

	// A stale fingerprint, a corrupt state file and a deleted model each
	// cause exactly the affected configurations to run again.
	if err := os.WriteFile(statePath(out, cfgs[1]), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(out, cfgs[2].ModelFile("net.onnx"))); err != nil {
		t.Fatal(err)
	}
	progress.Reset()
	ev3 := &fakeEvaluator{fingerprint: "fp1"}
	res3, err := Run(context.Background(), opts, ev3)
	if err != nil {
		t.Fatal(err)
	}
	if res3.Ran != 2 || res3.Skipped != 2 {
		t.Errorf("after damage: ran %d skipped %d, want 2 2", res3.Ran, res3.Skipped)
	}
	if !strings.Contains(progress.String(), "corrupt") || !strings.Contains(progress.String(), "is missing") {
		t.Errorf("progress does not say why work is redone:\n%s", progress.String())
	}
	ev4 := &fakeEvaluator{fingerprint: "fp2"}
	res4, err := Run(context.Background(), opts, ev4)
	if err != nil {
		t.Fatal(err)
	}
	if res4.Ran != 4 || res4.Skipped != 0 {
		t.Errorf("new fingerprint: ran %d skipped %d, want 4 0", res4.Ran, res4.Skipped)
	}
}

func TestRunBudgetRowsBesideRatioRows(t *testing.T) {
	out := t.TempDir()
	// The fake gives a budget b the size of ratio b/2: b0.75 falls between
	// r0.5 and r0.25, b0.25 below r0.25.
	cfgs, err := Grid([]string{"diag", "none"}, []float64{0.5, 0.25}, []pipeline.Budget{{Fraction: 0.75}, {Fraction: 0.25}})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Model: "net.onnx", Out: out, Configs: cfgs, Jobs: 2}
	res, err := Run(context.Background(), opts, &fakeEvaluator{fingerprint: "fp"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res.Sweep.Rows {
		got = append(got, r.Config)
		wantBudget := ""
		if strings.Contains(r.Config, "_b") {
			wantBudget = "params=" + strings.TrimPrefix(r.Config[strings.Index(r.Config, "_b"):], "_b")
			if r.RankRatio != 0 {
				t.Errorf("budget row %s has rank ratio %v", r.Config, r.RankRatio)
			}
		}
		if r.Budget != wantBudget {
			t.Errorf("row %s budget %q, want %q", r.Config, r.Budget, wantBudget)
		}
	}
	want := []string{"diag_r0.5", "diag_b0.75", "diag_r0.25", "diag_b0.25", "none_r0.5", "none_b0.75", "none_r0.25", "none_b0.25"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"| budget |", "| diag_b0.75 | diag | ", "| params=0.75 |", "decreasing order of parameters"} {
		if !strings.Contains(string(md), w) {
			t.Errorf("report.md lacks %q", w)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "net_diag_b0.75.onnx")); err != nil {
		t.Error(err)
	}
	// A second run takes every row, budget rows included, from the state.
	ev := &fakeEvaluator{fingerprint: "fp"}
	res2, err := Run(context.Background(), opts, ev)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Ran != 0 || res2.Skipped != len(cfgs) || ev.calls.Load() != 0 || !reflect.DeepEqual(res2.Sweep.Rows, res.Sweep.Rows) {
		t.Errorf("second run: ran %d skipped %d calls %d, rows equal %v", res2.Ran, res2.Skipped, ev.calls.Load(), reflect.DeepEqual(res2.Sweep.Rows, res.Sweep.Rows))
	}

	// A budget that cannot be met leaves out its row, says why, and lets
	// the other configurations finish; it is tried again next time.
	out3 := t.TempDir()
	opts.Out = out3
	ev3 := &fakeEvaluator{fingerprint: "fp", infeasible: "none_b0.25"}
	res3, err := Run(context.Background(), opts, ev3)
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, r := range res3.Sweep.Rows {
		got = append(got, r.Config)
	}
	if want := []string{"diag_r0.5", "diag_b0.75", "diag_r0.25", "diag_b0.25", "none_r0.5", "none_b0.75", "none_r0.25"}; !reflect.DeepEqual(got, want) ||
		!reflect.DeepEqual(res3.Unmet, []string{"none_b0.25"}) {
		t.Errorf("with an unmet budget: rows %v unmet %v", got, res3.Unmet)
	}
	md, _ = os.ReadFile(filepath.Join(out3, "report.md"))
	if !strings.Contains(string(md), "none_b0.25 has no row: budget params=0.25: budget 0.25 cannot be met") {
		t.Errorf("report.md does not explain the missing row:\n%s", md)
	}
	if _, err := os.Stat(statePath(out3, cfgs[7])); err == nil {
		t.Error("an unmet budget was recorded as finished")
	}
}

func TestRunJobsSameResultsAndBounded(t *testing.T) {
	var ratios []float64
	for i := 1; i <= 6; i++ {
		ratios = append(ratios, 1/float64(i))
	}
	cfgs, err := Grid([]string{"diag", "identity"}, ratios, nil)
	if err != nil {
		t.Fatal(err)
	}
	results := map[int][]report.Row{}
	for _, jobs := range []int{1, 2, 3} {
		ev := &fakeEvaluator{fingerprint: "fp", gate: make(chan struct{})}
		// Release the configurations one by one from another goroutine;
		// the semaphore must never let more than jobs of them wait at once.
		go func() {
			for range cfgs {
				ev.gate <- struct{}{}
			}
		}()
		res, err := Run(context.Background(), Options{Model: "net.onnx", Out: t.TempDir(), Configs: cfgs, Jobs: jobs}, ev)
		if err != nil {
			t.Fatal(err)
		}
		if m := ev.maxRunning.Load(); m > int32(jobs) {
			t.Errorf("jobs=%d: %d configurations ran at once", jobs, m)
		}
		rows := res.Sweep.Rows
		for i := range rows {
			rows[i].Model = filepath.Base(rows[i].Model)
		}
		results[jobs] = rows
	}
	for _, jobs := range []int{2, 3} {
		if !reflect.DeepEqual(results[jobs], results[1]) {
			t.Errorf("jobs=%d rows differ from jobs=1", jobs)
		}
	}
}

func TestRunErrorKeepsFinishedWork(t *testing.T) {
	out := t.TempDir()
	cfgs := testConfigs(t)
	opts := Options{Model: "net.onnx", Out: out, Configs: cfgs, Jobs: 1}
	ev := &fakeEvaluator{fingerprint: "fp", fail: cfgs[2].Name()}
	_, err := Run(context.Background(), opts, ev)
	if err == nil || !strings.Contains(err.Error(), cfgs[2].Name()) || !strings.Contains(err.Error(), "factorization failed") {
		t.Fatalf("err = %v, want the failing configuration named", err)
	}
	if ev.calls.Load() != 3 {
		t.Errorf("evaluated %d configurations, want 3 (stop after the failure)", ev.calls.Load())
	}
	if _, err := os.Stat(filepath.Join(out, "report.md")); err == nil {
		t.Error("report written despite the failure")
	}
	ev2 := &fakeEvaluator{fingerprint: "fp"}
	res, err := Run(context.Background(), opts, ev2)
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped != 2 || res.Ran != 2 {
		t.Errorf("resume after failure: ran %d skipped %d, want 2 2", res.Ran, res.Skipped)
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ev := &fakeEvaluator{fingerprint: "fp", gate: make(chan struct{})}
	var once sync.Once
	go func() {
		for ev.calls.Load() == 0 {
			// wait for the first configuration to start
			runtime.Gosched()
		}
		once.Do(cancel)
	}()
	_, err := Run(ctx, Options{Model: "net.onnx", Out: t.TempDir(), Configs: testConfigs(t), Jobs: 2}, ev)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "run the same command again to resume") {
		t.Fatalf("err = %v, want context.Canceled with a hint to resume", err)
	}
	if n := ev.calls.Load(); n > 2 {
		t.Errorf("%d configurations started after cancellation", n)
	}
}

func TestParseRatios(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []float64
		err  string
	}{
		{DefaultRatios, []float64{0.5, 0.25, 0.125, 0.0625}, ""},
		{"0.3, 1/3 ,1", []float64{0.3, 1.0 / 3, 1}, ""},
		{"2/8,", []float64{0.25}, ""},
		{"", nil, "at least one"},
		{" None ", nil, ""},
		{"0", nil, "greater than 0"},
		{"3/2", nil, "at most 1"},
		{"1/0", nil, "fraction"},
		{"quarter", nil, "fraction"},
		{"NaN", nil, "greater than 0"},
	} {
		got, err := ParseRatios(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseRatios(%q) err = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseRatios(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestConfigNames(t *testing.T) {
	for _, c := range []struct {
		cfg        Config
		name, file string
	}{
		{Config{Residual: "diag", Ratio: 0.25}, "diag_r0.25", "mobilenetv1_diag_r0.25.onnx"},
		{Config{Residual: "dw3x3", Ratio: 1.0 / 16}, "dw3x3_r0.0625", "mobilenetv1_dw3x3_r0.0625.onnx"},
		{Config{Residual: "none", Ratio: 1.0 / 3}, "none_r0.3333", "mobilenetv1_none_r0.3333.onnx"},
		{Config{Residual: "diag", Budget: pipeline.Budget{Fraction: 0.6}}, "diag_b0.6", "mobilenetv1_diag_b0.6.onnx"},
		{Config{Residual: "none", Budget: pipeline.Budget{Resource: pipeline.MACs, Fraction: 0.5}}, "none_bmacs0.5", "mobilenetv1_none_bmacs0.5.onnx"},
		{Config{Residual: "diag", Budget: pipeline.Budget{Resource: pipeline.LatencyResource, Fraction: 0.8}}, "diag_blatency0.8", "mobilenetv1_diag_blatency0.8.onnx"},
	} {
		if got := c.cfg.Name(); got != c.name {
			t.Errorf("Name() = %q, want %q", got, c.name)
		}
		if got := c.cfg.ModelFile("testdata/models/mobilenetv1.onnx"); got != c.file {
			t.Errorf("ModelFile() = %q, want %q", got, c.file)
		}
	}
	if _, err := Grid([]string{"diag"}, []float64{1.0 / 3, 0.33333}, nil); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate names not rejected: %v", err)
	}
	b6 := pipeline.Budget{Fraction: 0.6}
	if _, err := Grid([]string{"diag"}, nil, []pipeline.Budget{b6, b6}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate budgets not rejected: %v", err)
	}
	if _, err := Grid([]string{"../x"}, []float64{0.5}, nil); err == nil {
		t.Error("unsafe residual name accepted")
	}
	if _, err := Grid([]string{"diag"}, nil, nil); err == nil {
		t.Error("a grid without ratios and budgets accepted")
	}
	// Ratios first, then budgets, per residual.
	got, err := Grid([]string{"diag", "none"}, []float64{0.25}, []pipeline.Budget{b6})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range got {
		names = append(names, c.Name())
	}
	if want := []string{"diag_r0.25", "diag_b0.6", "none_r0.25", "none_b0.6"}; !reflect.DeepEqual(names, want) {
		t.Errorf("Grid = %v, want %v", names, want)
	}
}

func TestParseBudgets(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []pipeline.Budget
		err  string
	}{
		{"", nil, ""},
		{"0.8, params=0.6,macs=1/2,", []pipeline.Budget{{Fraction: 0.8}, {Fraction: 0.6}, {Resource: pipeline.MACs, Fraction: 0.5}}, ""},
		{"1.5", nil, "at most 1"},
		{"size=0.5", nil, "params=F"},
		{"latency=0.8,macs=0.5", []pipeline.Budget{{Resource: pipeline.LatencyResource, Fraction: 0.8}, {Resource: pipeline.MACs, Fraction: 0.5}}, ""},
	} {
		got, err := ParseBudgets(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseBudgets(%q) err = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseBudgets(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestRunMeasuresLatencyAfterConfigs(t *testing.T) {
	out := t.TempDir()
	cfgs := testConfigs(t)[:2]
	clock := &fakeClock{}
	m := &fakeMeter{clock: clock, d: map[string]time.Duration{"net.onnx": 4 * time.Millisecond}}
	for i, c := range cfgs {
		m.d[filepath.Join(out, c.ModelFile("net.onnx"))] = time.Duration(i+1) * time.Millisecond
	}
	opts := Options{Model: "net.onnx", Out: out, Configs: cfgs, Jobs: 2, Latency: m,
		LatencyOptions: LatencyOptions{Warmup: 1, Runs: 3, Rounds: 1, MinTime: time.Millisecond, clock: clock.now}}
	res, err := Run(context.Background(), opts, &fakeEvaluator{fingerprint: "fp"})
	if err != nil {
		t.Fatal(err)
	}
	if l := res.Sweep.Original.LatencyMs; l == nil || *l != 4 {
		t.Fatalf("original latency = %v, want 4", l)
	}
	for i, r := range res.Sweep.Rows {
		if r.LatencyMs == nil || *r.LatencyMs != float64(i+1) || *r.LatencyRatio != float64(i+1)/4 {
			t.Errorf("row %s latency %v ratio %v", r.Config, r.LatencyMs, r.LatencyRatio)
		}
	}
	if _, err := os.Stat(filepath.Join(out, report.PlotLatencyMACs)); err != nil {
		t.Errorf("latency plot missing: %v", err)
	}
	// Latency is not part of the recorded state: a resumed run measures
	// every model again next to the original.
	data, err := os.ReadFile(statePath(out, cfgs[0]))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"latency_ms": null`) {
		t.Errorf("state records a latency:\n%s", data)
	}

	// A failing meter leaves latency out and says why.
	delete(m.d, "net.onnx")
	res, err = Run(context.Background(), opts, &fakeEvaluator{fingerprint: "fp"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sweep.Original.LatencyMs != nil || res.Sweep.Rows[0].LatencyMs != nil {
		t.Error("latency kept after the meter failed")
	}
	notes := strings.Join(res.Sweep.Meta.Notes, "\n")
	if !strings.Contains(notes, "Latency was not measured") {
		t.Errorf("notes do not explain missing latency: %q", notes)
	}
}

// fptr returns a pointer to v.
func fptr(v float64) *float64 { return &v }
