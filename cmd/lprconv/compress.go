package main

import (
	"cmp"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/chanperm"
	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/pipeline"
	"github.com/lprconv/lprconv/quantize"
	"github.com/lprconv/lprconv/svd"
	"github.com/lprconv/lprconv/svd/enginegemm"
)

// defaultResidual is the residual kind compress uses unless --residual says
// otherwise (see bench/compress for the measurements behind it).
const defaultResidual = "diag"

// defaultRankRatio is the rank ratio used when no rank flag is given.
const defaultRankRatio = 0.25

// defaultMultiple rounds ranks up to multiples of 16, the channel block of
// ONNX Runtime's NCHWc kernels on AVX-512: a rank off the block (r = 8 for
// C = 32) made the layer slower than the original in bench/compress, and
// layers too narrow for a block-aligned rank to shrink them are kept.
const defaultMultiple = 16

// defaultChannelAlign keeps layers whose channel count is not a multiple
// of 4: ONNX Runtime runs them outside its blocked layout, where the LPR
// module was slower than the original layer (ShuffleNetV2 x1.0's C = 58
// layers in bench/compress).
const defaultChannelAlign = 4

// compressOutput is what compress prints: the pipeline's result and the
// notes about budget and fine-tuning.
type compressOutput struct {
	*pipeline.Result
	Notes []string `json:"notes,omitempty"`
}

// progressPrinter returns a pipeline progress callback that prints the
// stages' messages and draws a progress bar per stage on w.
func progressPrinter(w io.Writer) func(pipeline.Event) {
	bars := map[pipeline.Stage]*progress{}
	return func(e pipeline.Event) {
		switch {
		case e.Finished:
			bars[e.Stage].finish()
			delete(bars, e.Stage)
		case e.Total > 0:
			p := bars[e.Stage]
			if p == nil {
				unit := "steps"
				if e.Stage == pipeline.StageBudget {
					unit = "runs"
				}
				p = newProgressFrom(w, string(e.Stage), unit, e.Total, e.Done)
				bars[e.Stage] = p
			}
			p.update(e.Done, e.Status)
		case e.Message != "":
			fmt.Fprintln(w, e.Message)
		}
	}
}

// repeatedString is a flag value that collects every occurrence verbatim
// (no comma splitting, so regular expressions like a{1,2} survive).
type repeatedString struct{ values []string }

func (r *repeatedString) Set(v string) error { r.values = append(r.values, v); return nil }
func (r *repeatedString) String() string     { return strings.Join(r.values, " ") }

// Get returns the values given (flag.Getter: the checkpoint fingerprint
// reads every set flag's value).
func (r *repeatedString) Get() any { return r.values }

func compressCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the compressed model to `OUT`"},
		&cli.IntFlag{Name: "rank", Usage: "use rank `N` for every layer"},
		&cli.Float64Flag{Name: "rank-ratio", Usage: fmt.Sprintf("use rank ceil(`F`·C) (default %g when no rank flag is given)", defaultRankRatio)},
		&cli.Float64Flag{Name: "energy", Usage: "use the smallest rank keeping the fraction `E` of the squared singular values"},
		&cli.IntFlag{Name: "multiple", Value: defaultMultiple, Usage: "round ranks up to a multiple of `M` (16 matches ONNX Runtime's blocked kernels; 1 disables)"},
		&cli.IntFlag{Name: "channel-align", Value: defaultChannelAlign, Usage: "keep layers whose channel count is not a multiple of `N` (slow in ONNX Runtime; 1 disables)"},
		&cli.GenericFlag{Name: "layer-rank", Value: &repeatedString{}, Usage: "set the rank of one layer, `NAME=R` (repeatable)"},
		&cli.GenericFlag{Name: "exclude", Value: &repeatedString{}, Usage: "keep layers whose name matches `REGEX` (repeatable)"},
		&cli.BoolFlag{Name: "force", Usage: "replace layers even when the LPR module is not smaller"},
		&cli.StringFlag{Name: "residual", Value: defaultResidual, Usage: "residual path: none, identity, diag or dwK (e.g. dw3)"},
		&cli.StringFlag{Name: "input-shape", Usage: "input shape `[NAME=]N,C,H,W` for MAC accounting (dynamic dims default to 1)"},
		&cli.BoolFlag{Name: "external-data", Usage: "store tensors in a data file next to OUT"},
		&cli.BoolFlag{Name: "overwrite", Usage: "replace OUT if it exists (never the input)"},
		&cli.BoolFlag{Name: "dry-run", Usage: "plan and report only; write nothing"},
		&cli.StringFlag{Name: "relabel", Value: "auto", Usage: "relabel hidden channels first (the same function to float32 round-off) so that each module's diag or depthwise residual pairs every output channel with the input channel holding the largest entry of the layer's low-rank remainder: auto (without --data), on or off. Data-free, the residual then captures more (+7 points of test accuracy on the fixtures at the default ranks) and its scales come out positive, which lets a residual after a ReLU fold into the layer before (faster in ONNX Runtime); after fine-tuning it did not pay (-0.12 to +0.05 points), so auto leaves the order with --data"},
		&cli.BoolFlag{Name: "keep-forms", Usage: "write channel shuffles and diag residuals as they are; by default a shuffle's Concat + Reshape + Transpose becomes one Concat (bit-identical), a diag residual whose input comes from a Conv or BatchNormalization is folded into it (equal to float32 round-off), and a Conv -> depthwise Conv -> Conv chain whose width is not a multiple of 4 is padded with zero channels, forms ONNX Runtime runs faster; keep them to fine-tune the written file again with the diag scales as LPR tensors"},
		&cli.BoolFlag{Name: "keep-shape-ops", Usage: "keep the model's run-time shape arithmetic (Shape, Gather, ... feeding Reshape and Slice); by default it is folded into constants, which changes no computed value"},
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object instead of a table"},
		&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the randomized SVD"},
		&cli.IntFlag{Name: "workers", Usage: "factorize up to `N` layers at once (default: --threads)"},
		&cli.StringFlag{Name: "precision", Value: "fp32", Usage: "precision of OUT: fp32, fp16 (float16 weights, float32 inputs and outputs) or int8 (QDQ, calibrated on --data; see lprconv quantize)"},
		&cli.StringFlag{Name: "quant-method", Value: "minmax", Usage: "int8 calibration: minmax or percentile"},
		&cli.IntFlag{Name: "quant-samples", Value: quantize.DefaultSamples, Usage: "int8: calibrate on `N` --data images"},
	}
	flags = append(flags, dataFlagsSplit("fine-tune on these images (image folder, IDX folder or file, NPY): enables data-aware initialization and distillation", "train")...)
	flags = append(flags, finetuneFlags(finetuneDefaults{ValFraction: defaultValFraction,
		EpochsUsage: "fine-tune for `N` passes over the --data images (default: the recipe for the amount of data; see above)"})...)
	flags = append(flags,
		&cli.IntFlag{Name: "batch", Value: defaultBatch, Usage: "batch `SIZE` for calibration and training"},
		&cli.StringFlag{Name: "checkpoint", Usage: "save training state in `DIR` (every --checkpoint-every steps, each epoch, and on Ctrl-C); rerunning the same command resumes"},
		&cli.IntFlag{Name: "checkpoint-every", Value: 200, Usage: "checkpoint interval in `STEPS`"},
		&cli.IntFlag{Name: "threads", Usage: "CPU threads for factorization, calibration, budgets and training (0: all cores)"},
	)
	flags = append(flags, budgetFlags()...)
	flags = append(flags, latencyFlags()...)
	return flagsAnywhere(&cli.Command{
		Name:      "compress",
		Usage:     "replace square pointwise convolutions with low-rank LPR modules",
		ArgsUsage: "IN -o OUT",
		Description: `Replaces every LPR candidate of IN (1x1, group-1, stride-1, unpadded Conv
with C_in == C_out and constant weights; a BatchNormalization right after it
is folded in first) by y = B(A x) + b + R(x): a C->r and an r->C 1x1 Conv plus
a residual R, initialized from the trained weights by truncated SVD. Layers
whose module would not be smaller than the original (r >= ~C/2) are kept
unless --force. Prints, per layer, C, rank, relative weight reconstruction
error, parameters before/after and the decision, then parameter, MAC and
file-size totals. OUT is written atomically; IN is never overwritten.

Ranks: one of --rank, --rank-ratio (default 0.25), --energy; then
--multiple rounds up (default 16, so that ONNX Runtime's blocked kernels
run the factors without layout changes; --multiple 1 keeps exact ranks),
--layer-rank sets single layers, --exclude skips layers by name (see
lprconv inspect for names; measure with bench/compress to find layers
whose replacement does not pay at your batch size). Layers whose channel
count is not a multiple of --channel-align (default 4) are kept: ONNX
Runtime runs them outside its blocked layout, where the module is slower.

Budget: --budget params=F (or macs=F) picks every layer's rank instead,
keeping the fraction F of the original's parameters (MACs) with the least
measured loss of fidelity (on --data images, else by weight error).
--budget latency=F needs ONNX Runtime: it times the original at the first
--latency-batch, and each candidate alone against its module at every rank
offered (multiples of --multiple up to the break-even), then keeps the
predicted whole-model latency (original minus the layers' savings) within
F; the result's measured ratio is printed and in --json (latency.budget).
Without --data its sensitivity is the error of the model's outputs on 16
random inputs (a proxy for images; the weight error misjudges layers of
very different cost in time).
--include-nonsquare also replaces 1x1 convolutions with C_in != C_out by
plain low-rank factors.

Residuals: none (plain SVD), identity (the LPRNet paper's W ≈ I + BA),
diag (per-channel scale, W ≈ diag(d) + BA; default), dwK (KxK depthwise).
Without --data, hidden channels are first relabeled (--relabel auto; the
same function) so that the diag residual pairs every output channel with the
input channel holding its largest remainder entry: +7 points of test accuracy
on the fixtures before fine-tuning, positive scales, and residuals after a
ReLU folded into the layer before (faster in ONNX Runtime).

Fine-tuning: with --data, each layer's factors are first fitted to its
input activations, then the model is distilled from the original. Without --epochs or --steps the schedule follows the amount of data
(measured on Fashion-MNIST, bench/finetune/RESULTS.md):
  - below 5,000 images: about 60,000 images' worth of steps (937 of 64):
    few images are revisited, not under-trained; label-free (--loss kd,
    --lr 2e-3); the first third of the steps fit only the modules' outputs
    (reconstruction), then distillation; modules of rank r below 24 learn
    at lr x 24/r, and while reconstructing those of rank at most C/4 at
    2.5 times that;
  - from 5,000 images: three times that (2,811 steps, 180,000 images), or
    one pass over more; --loss kd+ce (cross-entropy with the labels where
    the data has them; kd where it has none), --lr 5e-3; and after the
    data-aware initialization each replaced layer is refitted in order to
    the original's output given the compressed model's own input;
  - objective: KD on the logits at temperature 2 plus every LPR module's
    output matched to the original's (--match logits+modules), the
    channels of modules of rank at most C/4 weighed by how much the
    original's output depends on them (its Fisher information on the
    calibration images; --channel-weights none turns it off);
  - hold-out: 10% with best-epoch selection only from 20,000 images (2,000
    held out); fewer would select by noise, so the last step is kept;
  - no augmentation (it did not pay at 1,000 or 5,000 images).
Any of --batch, --lr, --loss, --temperature, --match, --channel-weights,
--augment, --val-fraction given explicitly overrides the recipe (--init weights drops
the refit); --epochs or --steps replaces it. The chosen recipe is printed
and is in --json (finetune.recipe).

Latency (latency.go): with ONNX Runtime (--ort-lib, $ONNXRUNTIME_LIB)
compress times original and result at --latency-batch (default 1 and 64)
and keeps layers whose module ONNX Runtime does not run measurably faster
at every one of them (--keep-slower replaces them; --no-latency skips).

Examples:
   lprconv compress mobilenet.onnx -o small.onnx
   lprconv compress mobilenet.onnx -o small.onnx --rank-ratio 0.125 --multiple 1
   lprconv compress shufflenet.onnx -o s.onnx --residual identity --exclude 'stage4'
   lprconv compress model.onnx --dry-run --energy 0.9 --json
   lprconv compress model.onnx -o small.onnx --data train/ --mean 0.286 --std 0.353   # few-image recipe`,
		Flags: flags,
	}, func(c *cli.Context, args []string) error {
		if len(args) != 1 {
			return cli.Exit("compress: expected one input model IN (see lprconv compress --help)", 2)
		}
		opts, closeData, err := compressOptionsFrom(c, args[0])
		if err != nil {
			return err
		}
		defer closeData()
		var closeRT func()
		if opts.Latency, closeRT, err = latencyFrom(c); err != nil { // latency.go
			return cli.Exit("compress: "+err.Error(), 2)
		}
		defer closeRT()
		r, err := pipeline.Run(c.Context, opts)
		if err != nil {
			return err
		}
		out := compressOutput{Result: r}
		if r.Allocation != nil {
			out.Notes = append(out.Notes, budgetNote(r))
		}
		if r.FineTune != nil {
			out.Notes = append(out.Notes, finetuneNotes(r.FineTune, opts.FineTune.Options.Train)...)
		}
		if c.Bool("json") {
			return writeJSON(c.App.Writer, out)
		}
		return printCompress(c.App.Writer, out)
	})
}

// compressOptionsFrom reads the command's flags, loads the model and opens
// the --data set (closeData closes it).
func compressOptionsFrom(c *cli.Context, in string) (opts pipeline.Options, closeData func(), err error) {
	closeData = func() {}
	usage := func(format string, a ...any) error {
		return cli.Exit(fmt.Sprintf("compress: "+format, a...), 2)
	}
	opts = pipeline.Options{
		In: in, Out: c.String("output"), ExternalData: c.Bool("external-data"), Tool: "lprconv " + version,
		Progress: progressPrinter(c.App.ErrWriter),
		Plan: convert.PlanOptions{SVD: svd.Options{Seed: c.Uint64("seed"), Sgemm: enginegemm.New(c.Int("threads"))}, Workers: cmp.Or(c.Int("workers"), c.Int("threads")),
			ChannelAlign: c.Int("channel-align"), Candidates: convert.CandidateOptions{NonSquare: c.Bool("include-nonsquare")}},
	}
	dry := c.Bool("dry-run")
	if dry && opts.Out != "" {
		return opts, closeData, usage("--dry-run writes nothing; drop -o or --dry-run")
	}
	kind, err := svd.ParseResidual(c.String("residual"))
	if err != nil {
		return opts, closeData, usage("--residual: %v", err)
	}
	opts.Residual = kind
	rule := svd.Policy{Rank: c.Int("rank"), Ratio: c.Float64("rank-ratio"), Energy: c.Float64("energy"), Multiple: c.Int("multiple")}
	sel := convert.Selection{Force: c.Bool("force")}
	if c.IsSet("rank") && rule.Rank < 1 {
		return opts, closeData, usage("--rank %d must be at least 1", rule.Rank)
	}
	if !rule.HasRule() {
		rule.Ratio = defaultRankRatio
	}
	if v, ok := c.Generic("layer-rank").(*repeatedString); ok && len(v.values) > 0 {
		sel.Ranks = map[string]convert.LayerRank{}
		for _, s := range v.values {
			i := strings.LastIndex(s, "=")
			if i <= 0 {
				return opts, closeData, usage("--layer-rank %q: want NAME=R", s)
			}
			r, err := strconv.Atoi(s[i+1:])
			if err != nil || r < 1 {
				return opts, closeData, usage("--layer-rank %q: rank must be a positive integer", s)
			}
			sel.Ranks[s[:i]] = convert.LayerRank{Rank: r}
		}
	}
	if v, ok := c.Generic("exclude").(*repeatedString); ok && len(v.values) > 0 {
		if sel.Exclude, err = convert.ParseExclude(v.values); err != nil {
			return opts, closeData, usage("--exclude: %v", err)
		}
	}
	if err := rule.Validate(); err != nil {
		return opts, closeData, usage("%v", err)
	}
	opts.Rule, opts.Plan.Select = rule, sel
	if opts.Budget, err = budgetFrom(c, rule.Multiple); err != nil {
		return opts, closeData, usage("%v", err)
	}
	if opts.Budget != nil {
		opts.Rule = svd.Policy{}
	}
	if c.String("data") == "" {
		for _, f := range []string{"epochs", "steps", "lr", "init", "calib", "checkpoint", "loss", "train", "optimizer"} {
			if c.IsSet(f) {
				return opts, closeData, usage("--%s needs --data (the images to fine-tune on)", f)
			}
		}
	} else {
		if opts.FineTune, err = finetuneFrom(c, c.Int("batch")); err != nil {
			return opts, closeData, usage("%v", err)
		}
		opts.FineTune.Options.Threads = c.Int("threads")
		opts.FineTune.Options.CheckpointDir = c.String("checkpoint")
		opts.FineTune.Options.CheckpointEvery = c.Int("checkpoint-every")
		opts.FineTune.PeakRSS = peakRSS
	}
	if !dry && opts.Out == "" {
		return opts, closeData, usage("no output file; give -o OUT (or --dry-run)")
	}
	opts.Overwrite = c.Bool("overwrite")
	opts.KeepShapeOps = c.Bool("keep-shape-ops")
	opts.KeepForms = c.Bool("keep-forms")
	if opts.Relabel, err = pipeline.ParseRelabel(c.String("relabel")); err != nil {
		return opts, closeData, usage("--relabel %q: want auto, on or off", c.String("relabel"))
	}
	if opts.Original, opts.Inputs, err = onnxio.LoadFiles(in); err != nil {
		return opts, closeData, fmt.Errorf("compress: %w", err)
	}
	if !dry {
		// Refuse before any work: the input, a file it references, an
		// existing file without --overwrite, or a device or FIFO.
		if _, err := onnxio.CheckOutput(opts.Out, nil, onnxio.SaveOptions{ExternalData: opts.ExternalData}, opts.Inputs, opts.Overwrite); err != nil {
			return opts, closeData, cli.Exit("compress: "+err.Error(), 2)
		}
	}
	if spec := c.String("input-shape"); spec != "" {
		if opts.Plan.Shapes, err = shapeOptions(opts.Original, spec); err != nil {
			return opts, closeData, usage("%v", err)
		}
	}
	if opts.Precision, err = precisionFrom(c); err != nil {
		return opts, closeData, usage("%v", err)
	}
	if opts.FineTune == nil {
		return opts, closeData, nil
	}
	if opts.FineTune.Options.Fingerprint, err = checkpointFingerprint(c, in); err != nil {
		return opts, closeData, err
	}
	data, err := openData(c, opts.Original)
	if err != nil {
		return opts, closeData, err
	}
	closeData = func() { data.Source.Close() }
	opts.FineTune.Train = *data
	if err := applyRecipe(c, opts.FineTune, len(data.Indices)); err != nil {
		return opts, closeData, err
	}
	if opts.Budget != nil {
		opts.Budget.Data = data
	}
	return opts, closeData, nil
}

// precisionFrom reads --precision and the int8 calibration flags (nil at
// fp32). int8 calibrates on the --data images.
func precisionFrom(c *cli.Context) (*pipeline.Precision, error) {
	prec, err := quantize.ParsePrecision(c.String("precision"))
	if err != nil {
		return nil, fmt.Errorf("--precision: %w", err)
	}
	if prec == quantize.FP32 {
		return nil, nil
	}
	p := &pipeline.Precision{Precision: prec}
	if prec == quantize.INT8 {
		if c.String("data") == "" {
			return nil, fmt.Errorf("--precision int8 needs --data (the images that calibrate its activation ranges)")
		}
		method, err := quantize.ParseMethod(c.String("quant-method"))
		if err != nil {
			return nil, fmt.Errorf("--quant-method: %w", err)
		}
		if c.Int("quant-samples") < 1 {
			return nil, fmt.Errorf("--quant-samples %d: must be >= 1", c.Int("quant-samples"))
		}
		p.Options.Int8.Calibrate = quantize.CalibrateOptions{Method: method, Samples: c.Int("quant-samples"), Threads: c.Int("threads")}
	}
	return p, nil
}

// openData opens the --data set for model m, with --limit images chosen at
// random with --data-seed.
func openData(c *cli.Context, m *onnxpb.ModelProto) (*dataset.Subset, error) {
	in, err := evaluate.ModelInput(m)
	if err != nil {
		return nil, fmt.Errorf("fine-tune: %w", err)
	}
	spec, err := dataSpecFrom(c, in)
	if err != nil {
		return nil, cli.Exit(c.Command.Name+": "+err.Error(), 2)
	}
	src, err := dataset.Open(spec.Path, dataset.OpenOptions{Split: spec.Split, Labels: spec.Labels})
	if err != nil {
		return nil, err
	}
	idx := dataset.Indices(src.Len())
	if spec.Limit > 0 {
		idx = dataset.Random(idx, spec.Limit, c.Int64("data-seed"))
	}
	return &dataset.Subset{Source: src, Indices: idx, Pre: spec.Pre, Name: spec.Path}, nil
}

func printCompress(w io.Writer, r compressOutput) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(r.Layers) == 0 {
		fmt.Fprintln(w, "no candidates: no convolution of this model is a square pointwise one (1x1, one group, as many output channels as input channels), so nothing can be replaced; `lprconv inspect MODEL` lists every layer with the reason")
	} else {
		fmt.Fprintln(tw, "layer\tC\trank\trel.err\tparams before\tafter\tdecision")
	}
	for _, l := range r.Layers {
		rank, relErr, dec := "-", "-", "keep: "+l.Reason
		if l.Rank > 0 {
			rank = strconv.Itoa(l.Rank)
		}
		if l.Replace {
			relErr = fmt.Sprintf("%.3f", l.RelErr)
			dec = "replace"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", shorten(l.Name, 56), l.Channels, rank, relErr, count(l.ParamsBefore), count(l.ParamsAfter), dec)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fileNote := ""
	if r.DryRun {
		fileNote = " (estimated; dry run)"
	}
	fmt.Fprintf(w, "\nreplaced:  %d of %d candidates, residual %s\n", r.Replaced, len(r.Layers), r.Residual)
	fmt.Fprintf(w, "params:    %s -> %s (%.3fx)\n", count(r.ParamsBefore), count(r.ParamsAfter), r.ParamsRatio)
	fmt.Fprintf(w, "MACs:      %s -> %s (%.3fx)\n", count(r.MACsBefore), count(r.MACsAfter), r.MACsRatio)
	fmt.Fprintf(w, "file:      %s -> %s (%.3fx)%s\n", bytesText(r.FileBytesBefore), bytesText(r.FileBytesAfter), r.FileRatio, fileNote)
	if f := r.ShapeFold; f != nil && f.Removed() > 0 {
		fmt.Fprintf(w, "graph:     %d -> %d nodes (shape arithmetic folded into constants; --keep-shape-ops keeps it)\n", f.NodesBefore, f.NodesAfter)
	}
	if rl := r.Relabel; rl != nil && rl.Groups > 0 {
		fmt.Fprintf(w, "channels:  %s (--relabel off keeps the order)\n", relabelText(rl))
	}
	if f := r.Forms; f != nil && f.Changed() {
		fmt.Fprintf(w, "forms:     %s (--keep-forms keeps them)\n", f)
	}
	if q := r.Quantize; q != nil {
		fmt.Fprintf(w, "precision: %s (parameters, MACs and any accuracy above are the float32 model's; run the file in ONNX Runtime for its own)\n", q.Precision)
	}
	printLatency(w, r.Latency) // latency.go
	for _, n := range r.Notes {
		fmt.Fprintln(w, n)
	}
	if r.Output != "" {
		fmt.Fprintf(w, "written:   %s\n", r.Output)
	}
	return nil
}

// relabelText says what relabeling the channels did to the diag residuals.
func relabelText(rl *chanperm.Report) string {
	var before, after float64
	negB, negA, n := 0, 0, 0
	for _, l := range rl.Layers {
		if !l.Relabeled {
			continue
		}
		before += l.DiagShareBefore
		after += l.DiagShareAfter
		negB += l.NegativeBefore
		negA += l.NegativeAfter
		n++
	}
	if n == 0 {
		return fmt.Sprintf("%d groups relabeled", rl.Groups)
	}
	return fmt.Sprintf("%d groups relabeled for %d layers; their diag residual can take %.1f%% of the low-rank remainder instead of %.1f%%, negative scales %d -> %d",
		rl.Groups, n, 100*after/float64(n), 100*before/float64(n), negB, negA)
}
