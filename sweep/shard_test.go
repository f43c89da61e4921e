package sweep

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lprconv/lprconv/pipeline"
	"github.com/lprconv/lprconv/report"
)

// watchWriter collects progress lines and closes seen once they contain
// want.
type watchWriter struct {
	mu   sync.Mutex
	buf  strings.Builder
	want string
	seen chan struct{}
	once sync.Once
}

func newWatch(want string) *watchWriter {
	return &watchWriter{want: want, seen: make(chan struct{})}
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.want != "" && strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestParseShard(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Shard
		err  string
	}{
		{"0/1", Shard{0, 1}, ""},
		{"0/2", Shard{0, 2}, ""},
		{" 3 / 4 ", Shard{3, 4}, ""},
		{"0/0", Shard{}, "N must be at least 1"},
		{"2/2", Shard{}, "0..1"},
		{"-1/2", Shard{}, "0..1"},
		{"5/3", Shard{}, "0..2"},
		{"a/b", Shard{}, "0 <= I <= N-1"},
		{"1", Shard{}, "want I/N"},
		{"", Shard{}, "want I/N"},
	} {
		got, err := ParseShard(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), c.in) {
				t.Errorf("ParseShard(%q) = %v, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want || got.String() != strings.ReplaceAll(c.in, " ", "") {
			t.Errorf("ParseShard(%q) = %v (%q), %v; want %v", c.in, got, got.String(), err, c.want)
		}
	}
	if err := (Shard{Index: 2, Count: 2}).Validate(); err == nil {
		t.Error("Validate accepted shard 2/2")
	}
	if err := (Shard{}).Validate(); err != nil {
		t.Errorf("the whole sweep: %v", err)
	}
}

// TestShardRangePartitions: the shards of every count cut the
// configurations into contiguous blocks that cover each exactly once and
// differ in size by at most one.
func TestShardRangePartitions(t *testing.T) {
	for m := 1; m <= 12; m++ {
		if lo, hi := (Shard{}).Range(m); lo != 0 || hi != m {
			t.Errorf("whole sweep of %d: [%d, %d)", m, lo, hi)
		}
		for n := 1; n <= 14; n++ {
			next, small, large := 0, m, 0
			for i := 0; i < n; i++ {
				lo, hi := Shard{Index: i, Count: n}.Range(m)
				if lo != next || hi < lo {
					t.Fatalf("m=%d shard %d/%d: [%d, %d) after %d", m, i, n, lo, hi, next)
				}
				next = hi
				small, large = min(small, hi-lo), max(large, hi-lo)
			}
			if next != m || large-small > 1 {
				t.Errorf("m=%d n=%d: covers %d, sizes %d..%d", m, n, next, small, large)
			}
		}
	}
}

// budgetConfigs are 8 configurations with budgets, one of them unmet by
// the fake evaluator.
func budgetConfigs(t *testing.T) []Config {
	t.Helper()
	cfgs, err := Grid([]string{"diag", "none"}, []float64{0.5, 0.25}, []pipeline.Budget{{Fraction: 0.75}, {Fraction: 0.25}})
	if err != nil {
		t.Fatal(err)
	}
	return cfgs
}

func baseRows(rows []report.Row) []report.Row {
	out := append([]report.Row(nil), rows...)
	for i := range out {
		out[i].Model = filepath.Base(out[i].Model)
	}
	return out
}

// TestShardsConcurrentlyMatchWholeSweep: three shards run at once on one
// folder compute every configuration exactly once, and the report built
// from their state has the rows, unmet budgets and original of one
// unsharded sweep.
func TestShardsConcurrentlyMatchWholeSweep(t *testing.T) {
	cfgs := budgetConfigs(t)
	meta := report.Meta{Model: "net.onnx", Date: "2026-01-01T00:00:00Z", Command: "lprconv sweep net.onnx"}
	whole, err := Run(context.Background(), Options{Model: "net.onnx", Out: t.TempDir(), Configs: cfgs, Jobs: 2, Meta: meta},
		&fakeEvaluator{fingerprint: "fp", infeasible: "none_b0.25"})
	if err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(t.TempDir(), "shared")
	ev := &fakeEvaluator{fingerprint: "fp", infeasible: "none_b0.25"}
	const n = 3
	results := make([]*Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i], errs[i] = Run(context.Background(), Options{Model: "net.onnx", Out: out, Configs: cfgs, Jobs: 2,
				Meta: meta, Shard: Shard{Index: i, Count: n}, LockPoll: 5 * time.Millisecond}, ev)
		}(i)
	}
	wg.Wait()
	ran := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
		if results[i].Sweep != nil || results[i].Files != nil || results[i].Total != len(cfgs) {
			t.Errorf("shard %d wrote a report or miscounted: %+v", i, results[i])
		}
		ran += results[i].Ran
	}
	for _, c := range cfgs {
		if k := ev.perConfig[c.Name()]; k != 1 {
			t.Errorf("%s evaluated %d times, want 1", c.Name(), k)
		}
	}
	if ran != len(cfgs)-1 {
		t.Errorf("shards ran %d configurations, want %d (all but the unmet budget)", ran, len(cfgs)-1)
	}
	if _, err := os.Stat(filepath.Join(out, report.MarkdownFile)); err == nil {
		t.Error("a shard wrote report.md")
	}
	entries, _ := os.ReadDir(filepath.Join(out, StateDir))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".lock") {
			t.Errorf("lock %s left behind", e.Name())
		}
	}

	rep, err := Report(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(baseRows(rep.Sweep.Rows), baseRows(whole.Sweep.Rows)) {
		t.Errorf("report rows differ from the whole sweep's:\n%+v\nwant\n%+v", rep.Sweep.Rows, whole.Sweep.Rows)
	}
	if !reflect.DeepEqual(rep.Unmet, whole.Unmet) || !reflect.DeepEqual(rep.Sweep.Original, whole.Sweep.Original) ||
		!reflect.DeepEqual(rep.Sweep.Spectra, whole.Sweep.Spectra) || rep.Sweep.Meta.Command != meta.Command {
		t.Errorf("report: unmet %v original %+v command %q; want %v %+v %q", rep.Unmet, rep.Sweep.Original, rep.Sweep.Meta.Command,
			whole.Unmet, whole.Sweep.Original, meta.Command)
	}
	for i, r := range rep.Sweep.Rows {
		if want := filepath.Join(out, filepath.Base(r.Model)); r.Model != want {
			t.Errorf("row %d model %s, want %s", i, r.Model, want)
		}
	}
	notes := strings.Join(rep.Sweep.Meta.Notes, "\n")
	for _, want := range []string{"none_b0.25 has no row: budget params=0.25", "8 of 8 configurations finished", "no labelled data"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	for _, f := range []string{report.MarkdownFile, report.CSVFile, report.JSONFile, report.PlotAccuracyParams} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("Report did not write %s: %v", f, err)
		}
	}

	// A plain re-run of the whole sweep on the shards' folder computes
	// nothing and reports the same rows.
	ev2 := &fakeEvaluator{fingerprint: "fp", infeasible: "none_b0.25"}
	again, err := Run(context.Background(), Options{Model: "net.onnx", Out: out, Configs: cfgs, Jobs: 2, Meta: meta}, ev2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(baseRows(again.Sweep.Rows), baseRows(whole.Sweep.Rows)) || again.Ran != 0 {
		t.Errorf("re-run: ran %d, rows equal %v", again.Ran, reflect.DeepEqual(baseRows(again.Sweep.Rows), baseRows(whole.Sweep.Rows)))
	}
	// The unmet budget is tried again, as in a re-run of an unsharded sweep.
	if k := ev2.perConfig["none_b0.25"]; ev2.calls.Load() != 1 || k != 1 {
		t.Errorf("re-run evaluated %d configurations (%d of none_b0.25), want only the unmet budget", ev2.calls.Load(), k)
	}
}

// TestReportPartial: Report builds the report of the configurations that
// have finished and names the others; it refuses a folder without a sweep
// or without any finished configuration.
func TestReportPartial(t *testing.T) {
	cfgs := testConfigs(t)
	out := t.TempDir()
	res, err := Run(context.Background(), Options{Model: "net.onnx", Out: out, Configs: cfgs, Shard: Shard{Index: 0, Count: 2},
		Latency: &fakeMeter{}}, &fakeEvaluator{fingerprint: "fp"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ran != 2 || res.Finished != 2 || res.Total != 4 {
		t.Errorf("shard 0/2: ran %d, %d of %d finished; want 2, 2 of 4", res.Ran, res.Finished, res.Total)
	}
	rep, err := Report(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rep.Sweep.Rows {
		got = append(got, r.Config)
	}
	if want := []string{cfgs[0].Name(), cfgs[1].Name()}; !reflect.DeepEqual(got, want) || rep.Finished != 2 || rep.Total != 4 {
		t.Errorf("partial report rows %v (%d of %d), want %v", got, rep.Finished, rep.Total, want)
	}
	notes := strings.Join(rep.Sweep.Meta.Notes, "\n")
	for _, want := range []string{"2 of 4 configurations finished", "Not finished yet: none_r0.5, none_r0.25.", "Latency was not measured"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	csv, err := os.ReadFile(filepath.Join(out, report.CSVFile))
	if err != nil || strings.Count(string(csv), "\n") != 3 {
		t.Errorf("results.csv of the partial report: %v\n%s", err, csv)
	}
	md, _ := os.ReadFile(filepath.Join(out, report.MarkdownFile))
	if !strings.Contains(string(md), "Not finished yet: none_r0.5, none_r0.25.") {
		t.Errorf("report.md does not name the missing configurations:\n%s", md)
	}

	if _, err := Report(t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), ManifestFile) {
		t.Errorf("Report of an empty folder: %v", err)
	}
	empty := t.TempDir()
	if err := writeManifest(Options{Model: "net.onnx", Out: empty, Configs: cfgs}, Original{}, "fp"); err != nil {
		t.Fatal(err)
	}
	if _, err := Report(empty, nil); err == nil || !strings.Contains(err.Error(), "has finished yet") {
		t.Errorf("Report with nothing finished: %v", err)
	}
}

// writeLock makes a lock of another worker at path, modified at mtime.
func writeLock(t *testing.T, path string, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(lockOwner{Host: "other-host", PID: 42, Started: mtime, Token: "other"})
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// TestRunWaitsForLockedConfig: a configuration whose lock another live
// worker holds is not run; its result is taken once that worker records
// it, or it is run here when the worker gives up without a result.
func TestRunWaitsForLockedConfig(t *testing.T) {
	for _, finishes := range []bool{true, false} {
		cfgs := testConfigs(t)
		out := t.TempDir()
		held := cfgs[1]
		writeLock(t, lockPath(out, held), time.Now())
		watch := newWatch(held.Name() + " is being run by other-host (pid 42")
		ev := &fakeEvaluator{fingerprint: "fp"}
		var res *Result
		var err error
		done := make(chan struct{})
		go func() {
			defer close(done)
			res, err = Run(context.Background(), Options{Model: "net.onnx", Out: out, Configs: cfgs, Jobs: 2,
				Progress: watch, LockPoll: 5 * time.Millisecond}, ev)
		}()
		<-watch.seen
		other := report.Row{Agreement: fptr(0.123), Config: held.Name()}
		if finishes {
			// The other worker finishes: model, state, then the lock goes.
			if err := os.WriteFile(filepath.Join(out, held.ModelFile("net.onnx")), []byte("other"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := saveState(out, held, "fp", other); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Remove(lockPath(out, held)); err != nil {
			t.Fatal(err)
		}
		<-done
		if err != nil {
			t.Fatal(err)
		}
		row := res.Sweep.Rows[1]
		if finishes {
			if ev.perConfig[held.Name()] != 0 || ev.calls.Load() != 3 || *row.Agreement != 0.123 || res.Ran != 3 || res.Skipped != 1 {
				t.Errorf("other worker finished: %d calls (%d of %s), row agreement %v, ran %d skipped %d; want 3, 0, 0.123, 3, 1",
					ev.calls.Load(), ev.perConfig[held.Name()], held.Name(), *row.Agreement, res.Ran, res.Skipped)
			}
			if !strings.Contains(watch.String(), held.Name()+" finished by another worker") {
				t.Errorf("progress:\n%s", watch.String())
			}
		} else if ev.perConfig[held.Name()] != 1 || *row.Agreement == 0.123 || res.Ran != 4 {
			t.Errorf("other worker gave up: %s evaluated %d times, ran %d", held.Name(), ev.perConfig[held.Name()], res.Ran)
		}
	}
}

// TestRunTakesOverStaleLock: a lock without a heartbeat for longer than
// LockStale is taken over, and no lock or takeover file is left.
func TestRunTakesOverStaleLock(t *testing.T) {
	cfgs := testConfigs(t)
	out := t.TempDir()
	writeLock(t, lockPath(out, cfgs[2]), time.Now().Add(-time.Hour))
	var progress strings.Builder
	ev := &fakeEvaluator{fingerprint: "fp"}
	res, err := Run(context.Background(), Options{Model: "net.onnx", Out: out, Configs: cfgs, Progress: &progress,
		LockStale: time.Minute}, ev)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ran != 4 || ev.perConfig[cfgs[2].Name()] != 1 {
		t.Errorf("ran %d, %s evaluated %d times", res.Ran, cfgs[2].Name(), ev.perConfig[cfgs[2].Name()])
	}
	if !strings.Contains(progress.String(), cfgs[2].Name()+": took over the stale lock of other-host") {
		t.Errorf("progress does not report the takeover:\n%s", progress.String())
	}
	for _, p := range []string{lockPath(out, cfgs[2]), lockPath(out, cfgs[2]) + ".takeover"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
}

// TestStaleLockTakenOverOnce: of many workers that find one stale lock at
// the same time, exactly one takes it over.
func TestStaleLockTakenOverOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), StateDir, "diag_r0.5.lock")
	for trial := 0; trial < 20; trial++ {
		writeLock(t, path, time.Now().Add(-time.Hour))
		const workers = 6
		held := make([]*heldLock, workers)
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			lk, err := newLocker(Shard{}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				h, _, err := lk.tryLock(path)
				if err != nil {
					t.Error(err)
				}
				held[w] = h
			}(w)
		}
		wg.Wait()
		var winners []*heldLock
		for _, h := range held {
			if h != nil {
				winners = append(winners, h)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("trial %d: %d workers hold the lock, want 1", trial, len(winners))
		}
		owner, _, err := readLock(path)
		if err != nil || owner.Token != winners[0].token {
			t.Fatalf("trial %d: the lock file records %+v (%v), not the winner", trial, owner, err)
		}
		winners[0].release()
		if _, err := os.Stat(path); err == nil {
			t.Fatalf("trial %d: release left the lock", trial)
		}
	}
}

// TestRunSameFolderNoDuplicates: two whole-sweep runs at once on one
// folder evaluate each configuration once and report the same rows.
func TestRunSameFolderNoDuplicates(t *testing.T) {
	cfgs := budgetConfigs(t)
	out := t.TempDir()
	ev := &fakeEvaluator{fingerprint: "fp", gate: make(chan struct{})}
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case ev.gate <- struct{}{}:
			case <-stop:
				return
			}
		}
	}()
	defer close(stop)
	var res [2]*Result
	var errs [2]error
	var wg sync.WaitGroup
	for i := range res {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res[i], errs[i] = Run(context.Background(), Options{Model: "net.onnx", Out: out, Configs: cfgs, Jobs: 2,
				LockPoll: 5 * time.Millisecond}, ev)
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	for _, c := range cfgs {
		if k := ev.perConfig[c.Name()]; k != 1 {
			t.Errorf("%s evaluated %d times, want 1", c.Name(), k)
		}
	}
	if res[0].Ran+res[1].Ran != len(cfgs) || !reflect.DeepEqual(res[0].Sweep.Rows, res[1].Sweep.Rows) {
		t.Errorf("ran %d + %d of %d; rows equal %v", res[0].Ran, res[1].Ran, len(cfgs), reflect.DeepEqual(res[0].Sweep.Rows, res[1].Sweep.Rows))
	}
}

// TestRunLeavesTakenOverConfig: a worker whose lock is taken over while it
// runs (it stalled past LockStale) stops that configuration and takes the
// new owner's result.
func TestRunLeavesTakenOverConfig(t *testing.T) {
	cfgs := testConfigs(t)[:1]
	cfg := cfgs[0]
	out := t.TempDir()
	ev := &fakeEvaluator{fingerprint: "fp", gate: make(chan struct{})}
	watch := newWatch(cfg.Name() + ": its lock was taken over by other-host")
	var res *Result
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err = Run(context.Background(), Options{Model: "net.onnx", Out: out, Configs: cfgs, Progress: watch,
			LockStale: 2 * time.Second, LockPoll: 5 * time.Millisecond}, ev)
	}()
	// Once the configuration runs, another worker replaces the lock.
	for ev.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	writeLock(t, lockPath(out, cfg), time.Now())
	<-watch.seen
	if err := os.WriteFile(filepath.Join(out, cfg.ModelFile("net.onnx")), []byte("other"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := saveState(out, cfg, "fp", report.Row{Agreement: fptr(0.5), Config: cfg.Name()}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(lockPath(out, cfg)); err != nil {
		t.Fatal(err)
	}
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if ev.calls.Load() != 1 || res.Ran != 0 || res.Skipped != 1 || *res.Sweep.Rows[0].Agreement != 0.5 {
		t.Errorf("calls %d ran %d skipped %d agreement %v; want 1 0 1 0.5", ev.calls.Load(), res.Ran, res.Skipped, *res.Sweep.Rows[0].Agreement)
	}
}
