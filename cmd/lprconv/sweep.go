package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/pipeline"
	"github.com/lprconv/lprconv/report"
	"github.com/lprconv/lprconv/svd"
	"github.com/lprconv/lprconv/sweep"
)

func sweepCommand() *cli.Command {
	cmd := &cli.Command{
		Name:      "sweep",
		Usage:     "compress a model at several ranks and residuals and report size, fidelity, accuracy and latency",
		ArgsUsage: "MODEL --out DIR [--shard I/N] | --report DIR",
		Description: `Compresses MODEL once per configuration (each residual in --residuals at
each ratio in --rank-ratios, and at each budget in --budgets), measures every
compressed model against the original, and writes to DIR: report.md,
results.csv, results.json, PNG plots (accuracy or fidelity vs parameters and
MACs, latency vs MACs, accuracy vs measured latency, singular-value energy
per layer) and each compressed
model as <model>_<residual>_r<ratio>.onnx or <model>_<residual>_b<fraction>.onnx.

--budgets 0.8,0.6 adds one configuration per budget and residual whose
per-layer ranks are chosen as compress --budget does: each layer's
sensitivity is measured (on --budget-samples of the --data images, else from
the weight reconstruction error), once per residual, and the ranks with the
least predicted loss that keep that fraction of the original's parameters
are planned. Items may be params=F or macs=F (a MAC budget's files end in
_bmacs<F>.onnx) or latency=F (files end in _blatency<F>.onnx): as compress
--budget latency=F, the latency budget times the original and each layer
alone at each offered rank in ONNX Runtime at the first --latency-batch
(--latency-threads threads), chooses ranks from that table, and checks the
whole model; without --data its sensitivity is the output error on random
inputs. Latency budgets need the runtime (--ort-lib, $ONNXRUNTIME_LIB) and
run one at a time; the report's latency columns stay at batch 1. A budget that no offered ranks reach (see --multiple and
--channel-align) gets no row and a note saying the smallest reachable
fraction; the other configurations still run. Budget rows are listed among the rank-ratio rows of their
residual in decreasing order of parameters, so that rows of similar size
are neighbours. --rank-ratios none sweeps budgets only.

Ranks are rounded up to a multiple of --multiple (default 16, as compress:
ONNX Runtime's blocked kernels; --multiple 1 keeps exact ranks), and layers
whose channel count is not a multiple of --channel-align (default 4) are
kept. --include-nonsquare also replaces 1x1 convolutions whose input and
output widths differ (MobileNetV2's expand/project layers) by plain low-rank
factors; the rank ratio then applies to min(C_in, C_out).

Fidelity is the top-1 agreement and mean cosine similarity of the outputs
against the original, on --random N inputs, else on the --data images (when
not fine-tuning), else on the --eval images, else on 64 random inputs.
Accuracy needs a labelled --eval set (one sub-folder per class).

With --epochs or --steps, every configuration is fine-tuned on --data by
distillation from the original (as compress --data does: data-aware factor
initialization, then KD); the table then shows accuracy before and after.

--precisions fp32,fp16,int8 also writes every configuration at those
precisions (files and rows end in _fp16 / _int8; fp32 names are unchanged).
int8 calibrates on the --data images, else on the fidelity inputs. The
engine verifies the float32 model, so the fidelity and accuracy of fp16 and
int8 rows are measured on the written file in ONNX Runtime (--ort-lib); without
a runtime they are left empty.

Latency is measured in ONNX Runtime at batch 1 (median over interleaved
rounds, the original measured in the same run), after all configurations
have finished, whenever a runtime library is found (--ort-lib, else
$ONNXRUNTIME_LIB); the report then plots accuracy against it.

Finished configurations are recorded in DIR/state and skipped when the sweep
is run again with the same model, data and settings, so an interrupted sweep
resumes where it stopped. --jobs N runs N configurations at once.

Several machines can share one sweep through a shared --out folder:
--shard I/N runs only shard I (0 to N-1) of N, the I-th contiguous block of
the configurations in the order above, and writes no report. Each
configuration is locked while it runs (DIR/state/<config>.lock, created
exclusively, refreshed every --lock-stale/5 and taken over when older than
--lock-stale), so workers never run one configuration twice. Once the shards
have finished, --report DIR builds report.md, results.csv, results.json and
the plots from everything recorded in DIR, computing nothing (configurations
not yet finished are named in a note). The same command without --shard
also builds them, after running any configuration still missing, and
measures latency on its machine. See docs/distributed-sweeps.md for a
Kubernetes Indexed Job and a Slurm job array.

Examples:
   lprconv sweep mobilenet.onnx --out sweep-out
   lprconv sweep mobilenet.onnx --out s --rank-ratios 1/4,1/8 --residuals diag,identity,none
   lprconv sweep mobilenet.onnx --out s --rank-ratios 1/2,1/4 --budgets 0.8,0.6,macs=0.5
   lprconv sweep mobilenetv2.onnx --out s --include-nonsquare --rank-ratios none --budgets 0.7
   lprconv sweep testdata/models/mobilenetv1.onnx --out s --eval testdata/images/test --mean 0.286 --std 0.353
   lprconv sweep testdata/models/mobilenetv1.onnx --out s --rank-ratios 1/4,1/8 --eval testdata/images/test \
       --data testdata/images/train --epochs 2 --mean 0.286 --std 0.353
   lprconv sweep mobilenet.onnx --out /shared/s --rank-ratios 1/4,1/8 --shard 0/2   # on machine 1
   lprconv sweep mobilenet.onnx --out /shared/s --rank-ratios 1/4,1/8 --shard 1/2   # on machine 2
   lprconv sweep --report /shared/s`,
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the report, plots and models to folder `DIR`"},
			&cli.StringFlag{Name: "rank-ratios", Value: sweep.DefaultRatios, Usage: "rank ratios r/C to try, as fractions or decimals (`LIST`); none (or \"\") for budgets only"},
			&cli.StringFlag{Name: "budgets", Usage: "parameter budgets to try, per-layer ranks chosen by sensitivity: fractions, or params=F / macs=F items (`LIST`, e.g. 0.8,0.6,macs=0.5)"},
			&cli.IntFlag{Name: "budget-samples", Value: pipeline.DefaultBudgetSamples, Usage: "--data images `N` on which --budgets measure each layer's sensitivity"},
			&cli.BoolFlag{Name: "include-nonsquare", Usage: "also replace 1x1 convolutions whose input and output widths differ (MobileNetV2's expand/project layers) by plain low-rank factors; the rank ratio applies to min(C_in, C_out)"},
			&cli.StringFlag{Name: "residuals", Value: defaultResidual, Usage: "residual kinds to try: none, identity, diag, dwK (`LIST`)"},
			&cli.StringFlag{Name: "eval", Usage: "measure top-1 accuracy on the labelled images in `DIR` (an IDX folder's test split)"},
			&cli.IntFlag{Name: "random", Usage: "measure fidelity on `N` random standard-normal inputs"},
			&cli.StringFlag{Name: "precisions", Value: "fp32", Usage: "precisions to write every configuration at: fp32, fp16, int8 (`LIST`; int8 calibrates on --data, else the fidelity inputs)"},
		}, append(dataFlagsSplit("images for fidelity, or the training images when --epochs or --steps is given (image folder, IDX folder or file, NPY)", "train"),
			finetuneFlags(finetuneDefaults{})...)...),
			&cli.IntFlag{Name: "jobs", Value: 1, Usage: "run `N` configurations at once"},
			&cli.IntFlag{Name: "threads", Usage: "threads per configuration (default: CPUs / --jobs)"},
			&cli.IntFlag{Name: "batch", Value: defaultBatch, Usage: "batch `SIZE` for evaluation and fine-tuning"},
			&cli.IntFlag{Name: "multiple", Value: defaultMultiple, Usage: "round ranks up to a multiple of `M` (16 matches ONNX Runtime's blocked kernels; 1 disables)"},
			&cli.IntFlag{Name: "channel-align", Value: defaultChannelAlign, Usage: "keep layers whose channel count is not a multiple of `N` (slow in ONNX Runtime; 1 disables)"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the randomized SVD and the random inputs"},
			&cli.IntFlag{Name: "latency-runs", Value: 30, Usage: "least number of timed ONNX Runtime runs per model (median reported; fast models get more)"},
			&cli.BoolFlag{Name: "no-latency", Usage: "do not measure latency"},
			&cli.StringFlag{Name: "ort-lib", Usage: "ONNX Runtime library `FILE` to measure latency (and fp16/int8 files) with (default: $ONNXRUNTIME_LIB, then the .ci/run cache)"},
			&cli.StringFlag{Name: "latency-batch", Value: "1", Usage: "batch `SIZES` at which latency=F budgets time their per-layer table (the first) and their result, comma-separated"},
			&cli.IntFlag{Name: "latency-threads", Value: 1, Usage: "ONNX Runtime intra-op `THREADS` for latency=F budgets and the latency measurement"},
			allowNonFiniteFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print results.json to stdout instead of a table"},
			&cli.StringFlag{Name: "shard", Usage: "run only shard `I/N` of the configurations (0 <= I <= N-1) and write no report; shards may share --out"},
			&cli.DurationFlag{Name: "lock-stale", Value: sweep.DefaultLockStale, Usage: "take over a configuration's lock when its owner's heartbeat is older than `DURATION`"},
			&cli.StringFlag{Name: "report", Usage: "build the report of the sweep in `DIR` from its recorded results (no MODEL; computes nothing)"},
		),
	}
	return flagsAnywhere(cmd, runSweep)
}

// runSweep reads the flags, wires the sweep and prints the result.
func runSweep(c *cli.Context, args []string) error {
	usage := func(format string, a ...any) error {
		return cli.Exit(fmt.Sprintf("sweep: "+format, a...), 2)
	}
	if c.IsSet("report") {
		return sweepReport(c, args)
	}
	if len(args) != 1 {
		return usage("expected one MODEL argument (see lprconv sweep --help)")
	}
	model, out := args[0], c.String("out")
	if out == "" {
		return usage("no output folder; give --out DIR")
	}
	var shard sweep.Shard
	if c.IsSet("shard") {
		var err error
		if shard, err = sweep.ParseShard(c.String("shard")); err != nil {
			return usage("--shard: %v", err)
		}
		if c.Bool("json") {
			return usage("--json: a shard writes no report; once the shards have finished, use --report %s --json", out)
		}
	}
	if c.Duration("lock-stale") < time.Minute {
		// Heartbeats come every --lock-stale/5, and shared filesystems
		// cache file times for up to a minute.
		return usage("--lock-stale %s must be at least 1m", c.Duration("lock-stale"))
	}
	var ratios []float64
	var err error
	if s := strings.TrimSpace(c.String("rank-ratios")); s != "" {
		if ratios, err = sweep.ParseRatios(s); err != nil {
			return usage("--rank-ratios: %v", err)
		}
	}
	budgets, err := sweep.ParseBudgets(c.String("budgets"))
	if err != nil {
		return usage("--budgets: %v", err)
	}
	if len(ratios) == 0 && len(budgets) == 0 {
		return usage("no configurations: give --rank-ratios, --budgets or both")
	}
	if c.IsSet("budget-samples") && len(budgets) == 0 {
		return usage("--budget-samples needs --budgets")
	}
	var residuals []string
	var kinds []svd.ResidualKind
	for _, s := range strings.Split(c.String("residuals"), ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		k, err := svd.ParseResidual(s)
		if err != nil {
			return usage("--residuals: %v", err)
		}
		kinds = append(kinds, k)
		residuals = append(residuals, k.String())
	}
	if len(residuals) == 0 {
		return usage("--residuals: give at least one of none, identity, diag, dwK")
	}
	precisions, err := sweep.ParsePrecisions(c.String("precisions"))
	if err != nil {
		return usage("--precisions: %v", err)
	}
	configs, err := sweep.Grid(residuals, ratios, budgets, precisions...)
	if err != nil {
		return usage("%v", err)
	}
	for _, name := range []string{"jobs", "threads", "batch", "random", "multiple", "channel-align", "latency-runs", "epochs", "steps", "calib", "budget-samples"} {
		if c.Int(name) < 0 {
			return usage("--%s %d must not be negative", name, c.Int(name))
		}
	}
	if c.Int("batch") < 1 {
		return usage("--batch must be at least 1")
	}
	m, err := onnxio.Load(model)
	if err != nil {
		return err
	}
	in, err := evaluate.ModelInput(m)
	if err != nil {
		return fmt.Errorf("sweep: %s: %w", model, err)
	}
	spec, err := dataSpecFrom(c, in)
	if err != nil {
		return usage("%v", err)
	}
	ft, err := sweepFineTune(c)
	if err != nil {
		return usage("%v", err)
	}
	latBudgets, err := sweepLatencyBudgets(c, budgets)
	if err != nil {
		return usage("%v", err)
	}
	jobs, threads := max(1, c.Int("jobs")), c.Int("threads")
	if threads == 0 {
		// Results do not depend on the thread count; share the CPUs.
		threads = max(1, runtime.NumCPU()/jobs)
	}
	p, err := sweep.NewPipeline(sweep.PipelineOptions{
		Model: model, Data: spec.Path, Split: spec.Split, Labels: spec.Labels, Limit: spec.Limit,
		Random: c.Int("random"), Eval: c.String("eval"), Mean: spec.Pre.Mean, Std: spec.Pre.Std, Fit: spec.Pre.Fit,
		BatchSize: c.Int("batch"), Threads: threads, Seed: c.Uint64("seed"),
		Multiple: c.Int("multiple"), ChannelAlign: c.Int("channel-align"),
		Candidates:    convert.CandidateOptions{NonSquare: c.Bool("include-nonsquare")},
		BudgetSamples: c.Int("budget-samples"), SpectrumResidual: kinds[0],
		Tool: "lprconv " + version, Version: version, FineTune: ft, Log: c.App.ErrWriter,
		Precisions: precisions, ORTLib: c.String("ort-lib"), Latency: latBudgets,
	})
	if err != nil {
		return err
	}
	defer p.Close()

	meta := report.Meta{Model: model, Date: time.Now().UTC().Format(time.RFC3339), Command: sweepCommandLine(c, model)}
	if latBudgets != nil && latBudgets.Batches[0] != 1 {
		meta.Notes = append(meta.Notes, fmt.Sprintf("Latency budgets (latency=F) were allocated and checked at batch %d; the latency columns and plots are at batch 1.", latBudgets.Batches[0]))
	}
	var meter sweep.LatencyMeter
	latency := sweep.LatencyOptions{Runs: c.Int("latency-runs"), Threads: c.Int("latency-threads")}
	if c.Bool("no-latency") {
		meta.Notes = append(meta.Notes, "Latency was not measured (--no-latency).")
	} else if meter, err = sweep.NewLatencyMeter(c.String("ort-lib"), latency); err != nil {
		meta.Notes = append(meta.Notes, err.Error()+".")
		meter = nil
	}
	// On an interrupt, running configurations stop and finished ones stay
	// recorded, so that the next run resumes.
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := sweep.Run(ctx, sweep.Options{
		Model: model, Out: out, Configs: configs, Jobs: jobs,
		Progress: c.App.ErrWriter, Meta: meta, Latency: meter, LatencyOptions: latency,
		Shard: shard, LockStale: c.Duration("lock-stale"),
	}, p)
	if err != nil {
		return err
	}
	if shard.Sharded() {
		fmt.Fprintf(c.App.Writer, "shard %s: %d configurations run, %d taken from the state; %d of %d configurations of the sweep are finished\n",
			shard, res.Ran, res.Skipped, res.Finished, res.Total)
		if len(res.Unmet) > 0 {
			fmt.Fprintf(c.App.Writer, "budgets not met (no row): %s\n", strings.Join(res.Unmet, ", "))
		}
		fmt.Fprintf(c.App.Writer, "build the report with: lprconv sweep --report %s\n", out)
		return nil
	}
	if c.Bool("json") {
		return report.WriteJSON(c.App.Writer, res.Sweep)
	}
	if err := report.WriteTable(c.App.Writer, res.Sweep); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "\n%d configurations run, %d taken from an earlier run; report in %s\n", res.Ran, res.Skipped, out)
	if len(res.Unmet) > 0 {
		fmt.Fprintf(c.App.Writer, "budgets not met (no row; see the notes in report.md): %s\n", strings.Join(res.Unmet, ", "))
	}
	return sweepNonFiniteExit(c, res.Sweep)
}

// sweepNonFiniteExit returns exit code 3 naming the configurations whose
// models gave NaN or infinite logits, unless --allow-nonfinite is set.
func sweepNonFiniteExit(c *cli.Context, s *report.Sweep) error {
	if c.Bool("allow-nonfinite") {
		return nil
	}
	var bad []string
	for _, r := range s.Rows {
		if r.NonFinite > 0 {
			bad = append(bad, fmt.Sprintf("%s (%d samples)", r.Config, r.NonFinite))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return cli.Exit(fmt.Sprintf("sweep: NaN or infinite logits from %s; they are scored as wrong (pass --allow-nonfinite to exit 0 anyway)", strings.Join(bad, ", ")), 3)
}

// sweepReport builds the report of the sweep in --report DIR from its
// recorded results.
func sweepReport(c *cli.Context, args []string) error {
	dir := c.String("report")
	switch {
	case dir == "":
		return cli.Exit("sweep: --report needs the sweep's output folder DIR", 2)
	case len(args) != 0:
		return cli.Exit(fmt.Sprintf("sweep: --report %s builds the report of the sweep recorded there; give no MODEL (got %q)", dir, args[0]), 2)
	case c.IsSet("out") || c.IsSet("shard"):
		return cli.Exit("sweep: --report DIR writes into DIR; give no --out or --shard", 2)
	}
	res, err := sweep.Report(dir, c.App.ErrWriter)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return report.WriteJSON(c.App.Writer, res.Sweep)
	}
	if err := report.WriteTable(c.App.Writer, res.Sweep); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "\nreport of %d of %d configurations written to %s\n", res.Finished, res.Total, dir)
	return nil
}

// sweepFineTune reads the fine-tuning flags: nil unless --epochs or
// --steps is given (which needs --data).
func sweepFineTune(c *cli.Context) (*pipeline.FineTune, error) {
	if !c.IsSet("epochs") && !c.IsSet("steps") {
		for _, f := range finetuneFlagNames() {
			if c.IsSet(f) {
				return nil, fmt.Errorf("--%s is a fine-tuning flag; give --epochs or --steps (and --data) to fine-tune", f)
			}
		}
		return nil, nil
	}
	if c.String("data") == "" {
		return nil, fmt.Errorf("fine-tuning (--epochs, --steps) needs training images: give --data")
	}
	return finetuneFrom(c, c.Int("batch"))
}

// sweepCommandLine rebuilds the command line from the flags that were set,
// for the report.
func sweepCommandLine(c *cli.Context, model string) string {
	parts := []string{"lprconv", "sweep", model}
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if !c.IsSet(name) || name == "shard" {
			// The report is the whole sweep's, whichever shard wrote it.
			continue
		}
		if _, ok := f.(*cli.BoolFlag); ok {
			parts = append(parts, "--"+name)
			continue
		}
		parts = append(parts, "--"+name, c.String(name))
	}
	return strings.Join(parts, " ")
}

// sweepLatencyBudgets returns the ONNX Runtime settings of the sweep's
// latency budgets, nil when it has none.
func sweepLatencyBudgets(c *cli.Context, budgets []pipeline.Budget) (*sweep.LatencyBudgets, error) {
	if c.Int("latency-threads") < 1 {
		return nil, fmt.Errorf("--latency-threads %d must be at least 1", c.Int("latency-threads"))
	}
	batches, err := parseBatches(c.String("latency-batch"))
	if err != nil {
		return nil, fmt.Errorf("--latency-batch: %w", err)
	}
	for _, b := range budgets {
		if b.Resource != pipeline.LatencyResource {
			continue
		}
		if c.Bool("no-latency") {
			return nil, fmt.Errorf("--budgets %s is measured in ONNX Runtime; drop --no-latency", b)
		}
		return &sweep.LatencyBudgets{Batches: batches, Threads: c.Int("latency-threads")}, nil
	}
	if c.IsSet("latency-batch") {
		return nil, fmt.Errorf("--latency-batch needs a latency=F item in --budgets")
	}
	return nil, nil
}
