// Package sweep runs rank sweeps: it compresses a model once per
// configuration (residual kind x rank ratio), measures every result against
// the original, records each finished configuration so that an interrupted
// sweep resumes where it stopped, and writes the tables and plots of the
// report package. The work of one configuration is done by an Evaluator;
// Pipeline is the one built from lprconv's stages.
package sweep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lprconv/lprconv/pipeline"
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
	// Config, Residual, RankRatio, Budget and Model fields.
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
	// Out is the output folder; it is created when missing.
	Out string
	// Configs are the configurations to run, in report order.
	Configs []Config
	// Jobs is how many configurations run at once (at least 1).
	Jobs int
	// Progress receives one line per event; nil discards them.
	Progress io.Writer
	// Meta is copied into the report.
	Meta report.Meta
	// Latency, when set, measures the original and every compressed model
	// after all configurations have finished (see NewLatencyMeter), as
	// LatencyOptions say.
	Latency        LatencyMeter
	LatencyOptions LatencyOptions
}

// Result is the outcome of Run.
type Result struct {
	// Sweep is the full result, as written to the report files.
	Sweep *report.Sweep
	// Ran and Skipped count the configurations computed in this run and
	// those taken from the state of an earlier run.
	Ran, Skipped int
	// Unmet names the budget configurations whose budget no offered ranks
	// reach (pipeline.InfeasibleError); they have no row and are
	// explained in the report's notes.
	Unmet []string
	// Files are the report files written (Markdown, CSV, JSON, plots).
	Files []string
}

// Run measures the original model, then runs every configuration that is
// not already recorded as finished in opts.Out, at most opts.Jobs at a
// time, recording each one as soon as it finishes. It then writes the
// report files. A budget that no offered ranks reach
// (pipeline.InfeasibleError) is not an error: that configuration gets no
// row, a note in the report, and is listed in Result.Unmet. On the first
// other error it stops starting configurations, waits for those running,
// and returns the error; finished configurations stay recorded for the
// next run.
func Run(ctx context.Context, opts Options, ev Evaluator) (*Result, error) {
	if len(opts.Configs) == 0 {
		return nil, errors.New("sweep: no configurations to run")
	}
	jobs := opts.Jobs
	if jobs < 1 {
		jobs = 1
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, fmt.Errorf("create output folder: %w", err)
	}
	log := newLogger(opts.Progress)

	log.printf("sweep: measuring the original model %s", opts.Model)
	orig, err := ev.Original(ctx)
	if err != nil {
		return nil, fmt.Errorf("measure original model %s: %w", opts.Model, err)
	}
	fingerprint := ev.Fingerprint()

	rows := make([]report.Row, len(opts.Configs))
	var todo []int
	skipped := 0
	for i, cfg := range opts.Configs {
		modelPath := filepath.Join(opts.Out, cfg.ModelFile(opts.Model))
		row, ok, reason := loadState(opts.Out, cfg, fingerprint, modelPath)
		if ok {
			row.Model = modelPath
			rows[i] = row
			skipped++
			log.printf("sweep: %s finished in an earlier run, skipped", cfg.Name())
			continue
		}
		if reason != "" {
			log.printf("sweep: %s will be recomputed: %s", cfg.Name(), reason)
		}
		todo = append(todo, i)
	}
	log.printf("sweep: %d configurations to run, %d already finished, %d at a time", len(todo), skipped, jobs)

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		unmet    = make([]error, len(opts.Configs))
		done     int
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, jobs)
	for _, i := range todo {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			cfg := opts.Configs[i]
			mu.Lock()
			log.printf("sweep: %s running (%d of %d remaining)", cfg.Name(), len(todo)-done, len(todo))
			mu.Unlock()
			start := time.Now()
			row, err := runOne(ctx, opts, ev, cfg, fingerprint)
			mu.Lock()
			defer mu.Unlock()
			var inf *pipeline.InfeasibleError
			if err != nil && cfg.HasBudget() && errors.As(err, &inf) {
				// An unreachable budget is a finding, not a failure: the
				// other configurations go on.
				unmet[i] = err
				done++
				log.printf("sweep: %s has no row: %v (%d of %d done, %d remaining)", cfg.Name(), err, done, len(todo), len(todo)-done)
				return
			}
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				cancel()
				return
			}
			rows[i] = row
			done++
			log.printf("sweep: %s finished in %s (%d of %d done, %d remaining)", cfg.Name(),
				time.Since(start).Round(time.Millisecond), done, len(todo), len(todo)-done)
		}(i)
	}
	wg.Wait()
	if err := parent.Err(); err != nil {
		return nil, fmt.Errorf("sweep interrupted with %d of %d configurations finished (they are recorded in %s; run the same command again to resume): %w",
			skipped+done, len(opts.Configs), filepath.Join(opts.Out, StateDir), err)
	}
	if firstErr != nil {
		return nil, firstErr
	}

	meta := opts.Meta
	meta.Notes = append(append([]string(nil), meta.Notes...), orig.Notes...)
	cfgs := opts.Configs
	var unmetNames []string
	if slices.ContainsFunc(unmet, func(e error) bool { return e != nil }) {
		var keptCfgs []Config
		var keptRows []report.Row
		for i, e := range unmet {
			if e != nil {
				unmetNames = append(unmetNames, cfgs[i].Name())
				why := strings.TrimPrefix(e.Error(), "configuration "+cfgs[i].Name()+": ")
				meta.Notes = append(meta.Notes, fmt.Sprintf("%s has no row: %s.", cfgs[i].Name(), why))
				continue
			}
			keptCfgs, keptRows = append(keptCfgs, cfgs[i]), append(keptRows, rows[i])
		}
		cfgs, rows = keptCfgs, keptRows
	}
	if skipped > 0 {
		meta.Notes = append(meta.Notes, fmt.Sprintf("%d of %d configurations were taken from an earlier run recorded in %s.", skipped, len(opts.Configs), StateDir))
	}
	if hasBudget(opts.Configs) {
		rows = byResidualAndSize(cfgs, rows)
		meta.Notes = append(meta.Notes, "Budget rows (ranks chosen per layer by rankalloc for a parameter or MAC budget) are listed with the uniform rank-ratio rows of the same residual, in decreasing order of parameters, so that neighbouring rows have similar sizes.")
	}
	s := &report.Sweep{Meta: meta, Original: orig.Baseline, Rows: rows, Spectra: orig.Spectra}
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
	return &Result{Sweep: s, Ran: len(todo), Skipped: skipped, Unmet: unmetNames, Files: files}, nil
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
	row.Budget = ""
	if cfg.HasBudget() {
		row.Budget = cfg.Budget.String()
	}
	row.Model = modelPath
	if err := saveState(opts.Out, cfg, fingerprint, row); err != nil {
		return report.Row{}, err
	}
	return row, nil
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
