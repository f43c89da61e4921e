package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/report"
	"github.com/lprconv/lprconv/svd"
	"github.com/lprconv/lprconv/sweep"
)

func sweepCommand() *cli.Command {
	cmd := &cli.Command{
		Name:      "sweep",
		Usage:     "compress a model at several ranks and residuals and report size, fidelity, accuracy and latency",
		ArgsUsage: "MODEL --out DIR",
		Description: `Compresses MODEL once per configuration (each residual in --residuals at
each ratio in --rank-ratios), measures every compressed model against the
original, and writes to DIR: report.md, results.csv, results.json, PNG plots
(accuracy or fidelity vs parameters and MACs, latency vs MACs, singular-value
energy per layer) and each compressed model as <model>_<residual>_r<ratio>.onnx.

Fidelity is the top-1 agreement and mean cosine similarity of the outputs
against the original, on --data images, on --random N inputs, or (when
neither is given) on the --eval images or 64 random inputs. Accuracy needs a
labelled --eval set (one sub-folder per class). Latency is measured in ONNX
Runtime at batch 1 (median of --latency-runs) in binaries built with
-tags ort, after all configurations, next to the original.

Finished configurations are recorded in DIR/state and skipped when the sweep
is run again with the same model, data and settings, so an interrupted sweep
resumes where it stopped. --jobs N runs N configurations at once.

Examples:
   lprconv sweep mobilenet.onnx --out sweep-out
   lprconv sweep mobilenet.onnx --out s --rank-ratios 1/4,1/8 --residuals diag,identity,none
   lprconv sweep testdata/models/mobilenetv1.onnx --out s --eval testdata/images/test --mean 0.286 --std 0.353`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the report, plots and models to folder `DIR`"},
			&cli.StringFlag{Name: "rank-ratios", Value: sweep.DefaultRatios, Usage: "rank ratios r/C to try, as fractions or decimals (`LIST`)"},
			&cli.StringFlag{Name: "residuals", Value: defaultResidual, Usage: "residual kinds to try: none, identity, diag, dwK (`LIST`)"},
			&cli.StringFlag{Name: "data", Usage: "measure fidelity on the images in `DIR` (folder, IDX or NPY; labels not needed)"},
			&cli.IntFlag{Name: "samples", Usage: "use at most `N` samples of --data (default: all)"},
			&cli.StringFlag{Name: "eval", Usage: "measure top-1 accuracy on the labelled images in `DIR`"},
			&cli.IntFlag{Name: "random", Usage: "measure fidelity on `N` random standard-normal inputs"},
			&cli.StringFlag{Name: "preset", Usage: "normalisation preset: imagenet or none"},
			&cli.StringFlag{Name: "mean", Usage: "per-channel mean subtracted from [0,1] pixels (`LIST`, one value or one per channel)"},
			&cli.StringFlag{Name: "std", Usage: "per-channel std dividing the pixels (`LIST`)"},
			&cli.StringFlag{Name: "fit", Value: "resize", Usage: "fit images to the model input: resize or center-crop"},
			&cli.IntFlag{Name: "jobs", Value: 1, Usage: "run `N` configurations at once"},
			&cli.IntFlag{Name: "threads", Usage: "threads per model evaluation (default: CPUs / --jobs)"},
			&cli.IntFlag{Name: "batch-size", Value: 32, Usage: "evaluate `N` samples at once"},
			&cli.IntFlag{Name: "multiple", Usage: "round ranks up to a multiple of `M`"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the randomized SVD and the random inputs"},
			&cli.IntFlag{Name: "latency-runs", Value: 30, Usage: "least number of timed ONNX Runtime runs per model (median reported; fast models get more)"},
			&cli.BoolFlag{Name: "no-latency", Usage: "do not measure latency"},
			&cli.BoolFlag{Name: "json", Usage: "print results.json to stdout instead of a table"},
		},
	}
	return flagsAnywhere(cmd, runSweep)
}

// runSweep reads the flags, wires the sweep and prints the result.
func runSweep(c *cli.Context, args []string) error {
	usage := func(format string, a ...any) error {
		return cli.Exit(fmt.Sprintf("sweep: "+format, a...), 2)
	}
	if len(args) != 1 {
		return usage("expected one MODEL argument (see lprconv sweep --help)")
	}
	model, out := args[0], c.String("out")
	if out == "" {
		return usage("no output folder; give --out DIR")
	}
	ratios, err := sweep.ParseRatios(c.String("rank-ratios"))
	if err != nil {
		return usage("--rank-ratios: %v", err)
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
	configs, err := sweep.Grid(residuals, ratios)
	if err != nil {
		return usage("%v", err)
	}
	for _, name := range []string{"jobs", "threads", "batch-size", "samples", "random", "multiple", "latency-runs"} {
		if c.Int(name) < 0 {
			return usage("--%s %d must not be negative", name, c.Int(name))
		}
	}
	if c.IsSet("data") && c.IsSet("random") {
		return usage("give --data or --random, not both")
	}
	mean, std, err := sweepNormalisation(c)
	if err != nil {
		return usage("%v", err)
	}
	fit, err := dataset.ParseFit(c.String("fit"))
	if err != nil {
		return usage("--fit: %v", err)
	}

	jobs, threads := max(1, c.Int("jobs")), c.Int("threads")
	if threads == 0 {
		// Results do not depend on the thread count; share the CPUs.
		threads = max(1, runtime.NumCPU()/jobs)
	}
	p, err := sweep.NewPipeline(sweep.PipelineOptions{
		Model: model, Data: c.String("data"), Samples: c.Int("samples"), Random: c.Int("random"),
		Eval: c.String("eval"), Mean: mean, Std: std, Fit: fit,
		BatchSize: c.Int("batch-size"), Threads: threads, Seed: c.Uint64("seed"),
		Multiple: c.Int("multiple"), SpectrumResidual: kinds[0],
		Tool: "lprconv " + version, Version: version,
	})
	if err != nil {
		return err
	}
	defer p.Close()

	meta := report.Meta{Model: model, Date: time.Now().UTC().Format(time.RFC3339), Command: sweepCommandLine(c, model)}
	meta.Notes = append(meta.Notes, "Models are compressed data-free (SVD initialization, no fine-tuning).")
	var meter sweep.LatencyMeter
	latency := sweep.LatencyOptions{Runs: c.Int("latency-runs")}
	if c.Bool("no-latency") {
		meta.Notes = append(meta.Notes, "Latency was not measured (--no-latency).")
	} else if meter, err = sweep.NewLatencyMeter(latency); err != nil {
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
	}, p)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return report.WriteJSON(c.App.Writer, res.Sweep)
	}
	if err := report.WriteTable(c.App.Writer, res.Sweep); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "\n%d configurations run, %d taken from an earlier run; report in %s\n", res.Ran, res.Skipped, out)
	return nil
}

// sweepNormalisation returns the mean and std from --preset, --mean and
// --std (the explicit lists override the preset).
func sweepNormalisation(c *cli.Context) (mean, std []float32, err error) {
	mean, std = []float32{0}, []float32{1}
	if c.IsSet("preset") {
		if mean, std, err = dataset.Preset(c.String("preset")); err != nil {
			return nil, nil, fmt.Errorf("--preset: %w", err)
		}
	}
	if c.IsSet("mean") {
		if mean, err = sweepFloats(c.String("mean")); err != nil {
			return nil, nil, fmt.Errorf("--mean: %w", err)
		}
	}
	if c.IsSet("std") {
		if std, err = sweepFloats(c.String("std")); err != nil {
			return nil, nil, fmt.Errorf("--std: %w", err)
		}
	}
	return mean, std, nil
}

// sweepFloats parses a comma-separated list of numbers.
func sweepFloats(s string) ([]float32, error) {
	var out []float32
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(part), 32)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number list like 0.485,0.456,0.406", s)
		}
		out = append(out, float32(v))
	}
	return out, nil
}

// sweepCommandLine rebuilds the command line from the flags that were set,
// for the report.
func sweepCommandLine(c *cli.Context, model string) string {
	parts := []string{"lprconv", "sweep", model}
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if !c.IsSet(name) {
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
