// Package sweep runs rank sweeps: it compresses a model once per
// configuration (residual kind x rank ratio), measures every result against
// the original, records each finished configuration so that an interrupted
// sweep resumes where it stopped, and writes the tables and plots of the
// report package. The work of one configuration is done by an Evaluator;
// Pipeline is the one built from lprconv's stages.
//
// A sweep can be split into shards (Shard) run by several workers on one
// shared output folder: each configuration is run under an exclusive lock
// file (lock.go), and Report builds the report from whatever the workers
// have recorded, computing nothing.
package sweep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/lprconv/lprconv/report"
)

// Original is what an Evaluator measured on the original model.
type Original struct {
	Baseline report.Baseline
	// Spectra are the singular values of every candidate layer.
	Spectra []report.LayerSpectrum
	// Notes explain missing measurements (no labelled data, no ONNX
	// Runtime, no fine-tuning) and are shown in the report.
	Notes []string
}

// Evaluator does the work of a sweep: it measures the original model and
// compresses and measures one configuration at a time. Evaluate may be
// called from several goroutines at once, after Original has returned.
type Evaluator interface {
	// Original measures the original model.
	Original(ctx context.Context) (Original, error)
	// Evaluate compresses the original model with cfg, saves the result to
	// modelPath and returns its measurements. Run fills in the row's
	// Config, Residual, RankRatio, Budget, Precision and Model fields.
	Evaluate(ctx context.Context, cfg Config, modelPath string) (report.Row, error)
	// Fingerprint identifies everything besides the configuration that
	// affects results (model contents, data, settings). A configuration
	// recorded under another fingerprint is recomputed.
	Fingerprint() string
}

// Options configure Run.
type Options struct {
	// Model is the path of the original model; compressed models are
	// named after it.
	Model string
	// Out is the output folder; it is created when missing. Several
	// workers (processes, machines) may run one sweep in one folder at
	// once: each configuration is run by one of them (see the lock
	// description in lock.go).
	Out string
	// Configs are the configurations of the sweep, in report order (the
	// canonical order that shards are cut from).
	Configs []Config
	// Jobs is how many configurations run at once (at least 1).
	Jobs int
	// Progress receives one line per event; nil discards them.
	Progress io.Writer
	// Meta is copied into the report.
	Meta report.Meta
	// Latency, when set, measures the original and every compressed model
	// after all configurations have finished (see NewLatencyMeter), as
	// LatencyOptions say. A sharded run measures no latency.
	Latency        LatencyMeter
	LatencyOptions LatencyOptions
	// Shard, when set, runs only that shard's configurations and writes
	// no report files: Report (or a run of the whole sweep) builds them
	// once the shards have finished.
	Shard Shard
	// LockStale is how long a configuration's lock may go without a
	// heartbeat before it is taken over (DefaultLockStale when 0).
	LockStale time.Duration
	// LockPoll is how often a configuration that another worker runs is
	// checked (DefaultLockPoll when 0).
	LockPoll time.Duration
}

// Result is the outcome of Run.
type Result struct {
	// Sweep is the full result, as written to the report files; nil for a
	// sharded run.
	Sweep *report.Sweep
	// Ran and Skipped count the configurations computed in this run and
	// those taken from the state of an earlier run or of another worker.
	Ran, Skipped int
	// Unmet names the budget configurations whose budget no offered ranks
	// reach (pipeline.InfeasibleError); they have no row and are
	// explained in the report's notes.
	Unmet []string
	// Files are the report files written (Markdown, CSV, JSON, plots).
	Files []string
	// Finished and Total count the configurations of the whole sweep that
	// are recorded in Out's state (with a row or an unmet budget) and all
	// of them.
	Finished, Total int
}

// Run measures the original model, then runs every configuration (of
// opts.Shard, when set) that is not already recorded as finished in
// opts.Out, at most opts.Jobs at a time, each under its lock so that
// workers sharing the folder never run one configuration twice, and
// records each one as soon as it finishes. Unless sharded, it then writes
// the report files. A budget that no offered ranks reach
// (pipeline.InfeasibleError) is not an error: that configuration gets no
// row, a note in the report, and is listed in Result.Unmet. On the first
// other error it stops starting configurations, waits for those running,
// and returns the error; finished configurations stay recorded for the
// next run.
func Run(ctx context.Context, opts Options, ev Evaluator) (*Result, error) {
	if len(opts.Configs) == 0 {
		return nil, errors.New("sweep: no configurations to run")
	}
	if err := opts.Shard.Validate(); err != nil {
		return nil, err
	}
	jobs := opts.Jobs
	if jobs < 1 {
		jobs = 1
	}
	if opts.LockPoll <= 0 {
		opts.LockPoll = DefaultLockPoll
	}
	log := newLogger(opts.Progress)
	lo, hi := opts.Shard.Range(len(opts.Configs))
	if lo == hi {
		log.printf("sweep: shard %s has no configurations: the sweep has only %d", opts.Shard, len(opts.Configs))
		return &Result{Total: len(opts.Configs), Finished: countDone(opts.Out, opts.Model, opts.Configs, ev.Fingerprint())}, nil
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, fmt.Errorf("create output folder: %w", err)
	}

	log.printf("sweep: measuring the original model %s", opts.Model)
	orig, err := ev.Original(ctx)
	if err != nil {
		return nil, fmt.Errorf("measure original model %s: %w", opts.Model, err)
	}
	fingerprint := ev.Fingerprint()
	if err := writeManifest(opts, orig, fingerprint); err != nil {
		return nil, err
	}
	lk, err := newLocker(opts.Shard, opts.LockStale)
	if err != nil {
		return nil, err
	}

	outs := make([]outcome, len(opts.Configs))
	var todo []int
	skipped := 0
	for i := lo; i < hi; i++ {
		cfg := opts.Configs[i]
		modelPath := filepath.Join(opts.Out, cfg.ModelFile(opts.Model))
		row, ok, reason := loadState(opts.Out, cfg, fingerprint, modelPath)
		if ok {
			row.Model = modelPath
			outs[i] = outcome{done: true, row: row}
			skipped++
			log.printf("sweep: %s finished in an earlier run, skipped", cfg.Name())
			continue
		}
		if reason != "" {
			log.printf("sweep: %s will be recomputed: %s", cfg.Name(), reason)
		}
		todo = append(todo, i)
	}
	if opts.Shard.Sharded() {
		log.printf("sweep: shard %s: configurations %d to %d of %d", opts.Shard, lo+1, hi, len(opts.Configs))
	}
	log.printf("sweep: %d configurations to run, %d already finished, %d at a time", len(todo), skipped, jobs)

	r := &runner{opts: opts, ev: ev, lk: lk, fp: fingerprint, log: log, poll: opts.LockPoll, out: outs}
	runErr := r.run(ctx, todo, jobs)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sweep interrupted with %d of %d configurations finished (they are recorded in %s; run the same command again to resume): %w",
			skipped+r.done, hi-lo, filepath.Join(opts.Out, StateDir), err)
	}
	if runErr != nil {
		return nil, runErr
	}
	skipped += r.taken
	var unmetNames []string
	for i := lo; i < hi; i++ {
		if outs[i].unmet != "" {
			unmetNames = append(unmetNames, opts.Configs[i].Name())
		}
	}
	if opts.Shard.Sharded() {
		finished := countDone(opts.Out, opts.Model, opts.Configs, fingerprint)
		log.printf("sweep: shard %s done (%d run, %d taken from the state); %d of %d configurations of the sweep are finished",
			opts.Shard, r.ran, skipped, finished, len(opts.Configs))
		return &Result{Ran: r.ran, Skipped: skipped, Unmet: unmetNames, Finished: finished, Total: len(opts.Configs)}, nil
	}

	var note string
	if skipped > 0 {
		note = fmt.Sprintf("%d of %d configurations were taken from an earlier run recorded in %s.", skipped, len(opts.Configs), StateDir)
	}
	s := assemble(opts.Meta, orig, opts.Configs, outs, note)
	if opts.Latency != nil {
		if err := measureLatencies(opts.Latency, opts.LatencyOptions, opts.Model, s, log); err != nil {
			log.printf("sweep: %v", err)
			s.Meta.Notes = append(s.Meta.Notes, "Latency was not measured: "+err.Error())
			s.Original.LatencyMs = nil
			for i := range s.Rows {
				s.Rows[i].LatencyMs, s.Rows[i].LatencyRatio = nil, nil
			}
		}
	}
	files, err := report.WriteAll(opts.Out, s)
	if err != nil {
		return nil, err
	}
	log.printf("sweep: wrote %d report files to %s", len(files), opts.Out)
	return &Result{Sweep: s, Ran: r.ran, Skipped: skipped, Unmet: unmetNames, Files: files,
		Finished: len(opts.Configs), Total: len(opts.Configs)}, nil
}

// assemble builds the report of a sweep from the outcomes of its
// configurations (outs[i] of cfgs[i]): a row for every finished one, in
// report order, and the notes of meta and orig, of every unmet budget,
// then note (when not empty).
func assemble(meta report.Meta, orig Original, cfgs []Config, outs []outcome, note string) *report.Sweep {
	meta.Notes = append(append([]string(nil), meta.Notes...), orig.Notes...)
	var keptCfgs []Config
	var rows []report.Row
	for i, o := range outs {
		switch {
		case o.unmet != "":
			meta.Notes = append(meta.Notes, fmt.Sprintf("%s has no row: %s.", cfgs[i].Name(), o.unmet))
		case o.done:
			keptCfgs, rows = append(keptCfgs, cfgs[i]), append(rows, o.row)
		}
	}
	if note != "" {
		meta.Notes = append(meta.Notes, note)
	}
	if hasBudget(cfgs) {
		rows = byResidualAndSize(keptCfgs, rows)
		meta.Notes = append(meta.Notes, "Budget rows (ranks chosen per layer by rankalloc for a parameter, MAC or measured-latency budget) are listed with the uniform rank-ratio rows of the same residual, in decreasing order of parameters, so that neighbouring rows have similar sizes.")
	}
	return &report.Sweep{Meta: meta, Original: orig.Baseline, Rows: rows, Spectra: orig.Spectra}
}

// runOne evaluates one configuration and records it.
func runOne(ctx context.Context, opts Options, ev Evaluator, cfg Config, fingerprint string) (report.Row, error) {
	if err := ctx.Err(); err != nil {
		return report.Row{}, err
	}
	modelPath := filepath.Join(opts.Out, cfg.ModelFile(opts.Model))
	row, err := ev.Evaluate(ctx, cfg, modelPath)
	if err != nil {
		return report.Row{}, fmt.Errorf("configuration %s: %w", cfg.Name(), err)
	}
	row.Config = cfg.Name()
	row.Residual = cfg.Residual
	row.RankRatio = cfg.Ratio
	row.Budget, row.Precision = "", ""
	if cfg.Quantized() {
		row.Precision = string(cfg.Precision)
	}
	if cfg.HasBudget() {
		row.Budget = cfg.Budget.String()
	}
	row.Model = modelPath
	if err := saveState(opts.Out, cfg, fingerprint, row); err != nil {
		return report.Row{}, err
	}
	return row, nil
}

// modelPath returns where cfg's compressed model is written.
func (r *runner) modelPath(cfg Config) string {
	return filepath.Join(r.opts.Out, cfg.ModelFile(r.opts.Model))
}

// hasBudget reports whether any configuration is planned from a budget.
func hasBudget(cfgs []Config) bool {
	for _, c := range cfgs {
		if c.HasBudget() {
			return true
		}
	}
	return false
}

// byResidualAndSize orders rows (rows[i] measured for cfgs[i]) for
// comparison: residuals in their first-listed order, and within one
// residual by decreasing parameter ratio, ties in the listed order.
func byResidualAndSize(cfgs []Config, rows []report.Row) []report.Row {
	rank := map[string]int{}
	for _, c := range cfgs {
		if _, ok := rank[c.Residual]; !ok {
			rank[c.Residual] = len(rank)
		}
	}
	idx := make([]int, len(rows))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		ra, rb := rank[cfgs[idx[a]].Residual], rank[cfgs[idx[b]].Residual]
		if ra != rb {
			return ra < rb
		}
		return rows[idx[a]].ParamsRatio > rows[idx[b]].ParamsRatio
	})
	out := make([]report.Row, len(rows))
	for i, j := range idx {
		out[i] = rows[j]
	}
	return out
}

// logger writes whole progress lines from several goroutines.
type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func newLogger(w io.Writer) *logger {
	if w == nil {
		w = io.Discard
	}
	return &logger{w: w}
}

func (l *logger) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
}
