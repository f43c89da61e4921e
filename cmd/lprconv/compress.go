package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
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

// compressOptions is everything compressModel needs.
type compressOptions struct {
	In, Out      string
	Overwrite    bool
	DryRun       bool
	ExternalData bool
	Policy       svd.Policy
	Residual     svd.ResidualKind
	Shapes       convert.ShapeOptions
	SVD          svd.Options
	Workers      int
	// ChannelAlign keeps layers whose channel count is not a multiple of
	// it (see convert.PlanOptions.ChannelAlign).
	ChannelAlign int
	// Log receives progress lines (stderr); nil discards them.
	Log io.Writer
	// AfterPlan hooks run once the data-free plan exists and may replace
	// factors (data-aware initialization); AfterApply hooks run on the
	// rewritten model before it is written (fine-tuning, added by
	// configureFinetune).
	AfterPlan  []func(ctx context.Context, r *compressResult) error
	AfterApply []func(ctx context.Context, r *compressResult) error
	// Candidates and BeforePlan come from budget.go: which layers are
	// candidates, and hooks that run on the loaded model before planning
	// and may change the options (--budget sets the policy).
	Candidates convert.CandidateOptions
	BeforePlan []func(ctx context.Context, r *compressResult, opts *compressOptions) error
}

// compressResult is what compressModel did.
type compressResult struct {
	Input    string `json:"input"`
	Output   string `json:"output,omitempty"`
	Residual string `json:"residual"`
	DryRun   bool   `json:"dry_run"`
	// Original is the loaded model, Model the rewritten one (nil before
	// the rewrite).
	Original *onnxpb.ModelProto `json:"-"`
	Model    *onnxpb.ModelProto `json:"-"`
	Plan     *convert.Plan      `json:"-"`
	// Layers, totals and file sizes for reporting. FileBytesAfter is the
	// encoded size when the model was not written (dry run).
	Layers          []convert.LayerPlan `json:"layers"`
	Replaced        int                 `json:"replaced"`
	ParamsBefore    int64               `json:"params_before"`
	ParamsAfter     int64               `json:"params_after"`
	MACsBefore      int64               `json:"macs_before"`
	MACsAfter       int64               `json:"macs_after"`
	FileBytesBefore int64               `json:"file_bytes_before"`
	FileBytesAfter  int64               `json:"file_bytes_after"`
	ParamsRatio     float64             `json:"params_ratio"`
	MACsRatio       float64             `json:"macs_ratio"`
	FileRatio       float64             `json:"file_ratio"`
	// FineTune reports data-aware initialization and distillation when
	// compress ran with --data.
	FineTune *finetuneSummary `json:"finetune,omitempty"`
	// Notes are extra lines to print after the totals (e.g. fine-tuning
	// results).
	Notes []string `json:"notes,omitempty"`
}

// compressModel runs the data-free pipeline: check the paths, load, plan,
// (AfterPlan hooks), rewrite, (AfterApply hooks), write.
func compressModel(ctx context.Context, opts compressOptions) (*compressResult, error) {
	logf := func(format string, a ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, format+"\n", a...)
		}
	}
	if !opts.DryRun {
		if err := checkOutputPath(opts.In, opts.Out, opts.Overwrite); err != nil {
			return nil, err
		}
	}
	st, err := os.Stat(opts.In)
	if err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	m, err := onnxio.Load(opts.In)
	if err != nil {
		return nil, err
	}
	r := &compressResult{Input: opts.In, Residual: opts.Residual.String(), DryRun: opts.DryRun, Original: m, FileBytesBefore: st.Size()}
	if !opts.DryRun {
		r.Output = opts.Out
	}
	for _, h := range opts.BeforePlan {
		if err := h(ctx, r, &opts); err != nil {
			return nil, err
		}
	}
	logf("planning %s (residual %s)", opts.In, opts.Residual)
	po := planOptions(&opts)
	po.ChannelAlign = opts.ChannelAlign
	plan, err := convert.NewPlan(ctx, m, opts.Policy, opts.Residual, po)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", opts.In, err)
	}
	plan.Tool = "lprconv " + version
	r.Plan = plan
	logf("%d candidates, %d to replace", len(plan.Layers), plan.Replaced())
	for _, h := range opts.AfterPlan {
		if err := h(ctx, r); err != nil {
			return nil, err
		}
	}
	out, err := convert.Apply(m, plan)
	if err != nil {
		return nil, err
	}
	r.Model = out
	for _, h := range opts.AfterApply {
		if err := h(ctx, r); err != nil {
			return nil, err
		}
	}
	if err := r.account(opts.Shapes); err != nil {
		return nil, err
	}
	if opts.DryRun {
		r.FileBytesAfter = int64(proto.Size(r.Model))
	} else {
		if err := onnxio.Save(opts.Out, r.Model, onnxio.SaveOptions{ExternalData: opts.ExternalData}); err != nil {
			return nil, err
		}
		n, err := writtenBytes(opts.Out, opts.ExternalData)
		if err != nil {
			return nil, err
		}
		r.FileBytesAfter = n
		logf("wrote %s", opts.Out)
	}
	r.FileRatio = ratio(r.FileBytesAfter, r.FileBytesBefore)
	return r, nil
}

// account fills the report fields from the plan and the final model.
func (r *compressResult) account(shapes convert.ShapeOptions) error {
	r.Layers = r.Plan.Layers
	r.Replaced = r.Plan.Replaced()
	r.ParamsBefore, r.MACsBefore = r.Plan.ParamsBefore, r.Plan.MACsBefore
	s, err := convert.Inspect(r.Model, shapes)
	if err != nil {
		return fmt.Errorf("inspect the compressed model: %w", err)
	}
	r.ParamsAfter, r.MACsAfter = s.Params, s.MACs
	r.ParamsRatio = ratio(r.ParamsAfter, r.ParamsBefore)
	r.MACsRatio = ratio(r.MACsAfter, r.MACsBefore)
	return nil
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// writtenBytes is the size of the written model plus its external data.
func writtenBytes(path string, external bool) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	n := st.Size()
	if external {
		if d, err := os.Stat(filepath.Join(filepath.Dir(path), onnxio.ExternalDataName(path))); err == nil {
			n += d.Size()
		} else if d, err := os.Stat(onnxio.ExternalDataName(path)); err == nil {
			n += d.Size()
		}
	}
	return n, nil
}

// checkOutputPath refuses to write over the input and, unless overwrite
// is set, over an existing file; it also checks that the output folder
// exists, before any work is done.
func checkOutputPath(in, out string, overwrite bool) error {
	if out == "" {
		return cli.Exit("compress: no output file; give -o OUT (or --dry-run)", 2)
	}
	if same, err := samePath(in, out); err != nil {
		return err
	} else if same {
		return cli.Exit(fmt.Sprintf("compress: output %s is the input model; write to another file", out), 2)
	}
	st, err := os.Stat(out)
	switch {
	case err == nil && st.IsDir():
		return cli.Exit(fmt.Sprintf("compress: output %s is a directory; give a file name", out), 2)
	case err == nil && !overwrite:
		return cli.Exit(fmt.Sprintf("compress: output %s exists; pass --overwrite to replace it", out), 2)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("compress: output %s: %w", out, err)
	}
	if d, err := os.Stat(filepath.Dir(out)); err != nil || !d.IsDir() {
		return cli.Exit(fmt.Sprintf("compress: folder of output %s does not exist", out), 2)
	}
	return nil
}

// samePath reports whether a and b name the same file: the same resolved
// path, or (when both exist) the same inode.
func samePath(a, b string) (bool, error) {
	ra, err := resolvePath(a)
	if err != nil {
		return false, err
	}
	rb, err := resolvePath(b)
	if err != nil {
		return false, err
	}
	if ra == rb {
		return true, nil
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb), nil
}

// resolvePath returns the absolute path with symlinks resolved as far as
// the path exists.
func resolvePath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r, nil
	}
	if r, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		return filepath.Join(r, filepath.Base(abs)), nil
	}
	return abs, nil
}

// repeatedString is a flag value that collects every occurrence verbatim
// (no comma splitting, so regular expressions like a{1,2} survive).
type repeatedString struct{ values []string }

func (r *repeatedString) Set(v string) error { r.values = append(r.values, v); return nil }
func (r *repeatedString) String() string     { return strings.Join(r.values, " ") }

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
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object instead of a table"},
		&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the randomized SVD"},
		&cli.IntFlag{Name: "workers", Usage: "factorize up to `N` layers at once (default: all CPUs)"},
	}
	flags = append(flags, finetuneFlags()...)
	flags = append(flags, budgetFlags()...)
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
--include-nonsquare also replaces 1x1 convolutions with C_in != C_out by
plain low-rank factors.

Residuals: none (plain SVD), identity (the LPRNet paper's W ≈ I + BA),
diag (per-channel scale, W ≈ diag(d) + BA; default), dwK (KxK depthwise).

Examples:
   lprconv compress mobilenet.onnx -o small.onnx
   lprconv compress mobilenet.onnx -o small.onnx --rank-ratio 0.125 --multiple 1
   lprconv compress shufflenet.onnx -o s.onnx --residual identity --exclude 'stage4'
   lprconv compress model.onnx --dry-run --energy 0.9 --json`,
		Flags: flags,
	}, func(c *cli.Context, args []string) error {
		if len(args) != 1 {
			return cli.Exit("compress: expected one input model IN (see lprconv compress --help)", 2)
		}
		opts, err := compressOptionsFrom(c, args[0])
		if err != nil {
			return err
		}
		if err := configureFinetune(c, &opts); err != nil {
			return err
		}
		r, err := compressModel(c.Context, opts)
		if err != nil {
			return err
		}
		if c.Bool("json") {
			enc := json.NewEncoder(c.App.Writer)
			enc.SetIndent("", "  ")
			return enc.Encode(r)
		}
		return printCompress(c.App.Writer, r)
	})
}

// compressOptionsFrom reads the command's flags.
func compressOptionsFrom(c *cli.Context, in string) (compressOptions, error) {
	usage := func(format string, a ...any) error {
		return cli.Exit(fmt.Sprintf("compress: "+format, a...), 2)
	}
	opts := compressOptions{
		In: in, Out: c.String("output"), Overwrite: c.Bool("overwrite"), DryRun: c.Bool("dry-run"),
		ExternalData: c.Bool("external-data"), Workers: c.Int("workers"), Log: c.App.ErrWriter,
		ChannelAlign: c.Int("channel-align"),
		SVD:          svd.Options{Seed: c.Uint64("seed"), Sgemm: enginegemm.New(0)},
	}
	if opts.DryRun && opts.Out != "" {
		return opts, usage("--dry-run writes nothing; drop -o or --dry-run")
	}
	kind, err := svd.ParseResidual(c.String("residual"))
	if err != nil {
		return opts, usage("--residual: %v", err)
	}
	opts.Residual = kind
	p := svd.Policy{Rank: c.Int("rank"), Ratio: c.Float64("rank-ratio"), Energy: c.Float64("energy"),
		Multiple: c.Int("multiple"), Force: c.Bool("force")}
	if c.IsSet("rank") && p.Rank < 1 {
		return opts, usage("--rank %d must be at least 1", p.Rank)
	}
	if p.Rank == 0 && p.Ratio == 0 && p.Energy == 0 {
		p.Ratio = defaultRankRatio
	}
	if v, ok := c.Generic("layer-rank").(*repeatedString); ok && len(v.values) > 0 {
		p.Overrides = map[string]int{}
		for _, s := range v.values {
			i := strings.LastIndex(s, "=")
			if i <= 0 {
				return opts, usage("--layer-rank %q: want NAME=R", s)
			}
			r, err := strconv.Atoi(s[i+1:])
			if err != nil || r < 1 {
				return opts, usage("--layer-rank %q: rank must be a positive integer", s)
			}
			p.Overrides[s[:i]] = r
		}
	}
	if v, ok := c.Generic("exclude").(*repeatedString); ok && len(v.values) > 0 {
		if p.Exclude, err = svd.ParseExclude(v.values); err != nil {
			return opts, usage("--exclude: %v", err)
		}
	}
	if err := p.Validate(); err != nil {
		return opts, usage("%v", err)
	}
	opts.Policy = p
	if err := configureBudget(c, &opts); err != nil {
		return opts, err
	}
	m := (*onnxpb.ModelProto)(nil)
	if spec := c.String("input-shape"); spec != "" {
		if m, err = onnxio.Load(in); err != nil {
			return opts, err
		}
		if opts.Shapes, err = shapeOptions(m, spec); err != nil {
			return opts, usage("%v", err)
		}
	}
	return opts, nil
}

func printCompress(w io.Writer, r *compressResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "layer\tC\trank\trel.err\tparams before\tafter\tdecision")
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
	for _, n := range r.Notes {
		fmt.Fprintln(w, n)
	}
	if r.Output != "" {
		fmt.Fprintf(w, "written:   %s\n", r.Output)
	}
	return nil
}
