package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/quantize"
)

// quantizeReport is what lprconv quantize prints.
type quantizeReport struct {
	Input       string                    `json:"input"`
	Output      string                    `json:"output"`
	Precision   string                    `json:"precision"`
	Method      string                    `json:"method,omitempty"`
	Activations string                    `json:"activations,omitempty"`
	BytesBefore int64                     `json:"bytes_before"`
	BytesAfter  int64                     `json:"bytes_after"`
	FP16        *quantize.FP16Report      `json:"fp16,omitempty"`
	Int8        *quantize.Int8Report      `json:"int8,omitempty"`
	Ranges      map[string]quantize.Range `json:"-"`
}

func quantizeCommand() *cli.Command {
	flags := append(dataFlagsSplit("calibration images for int8: image folder, IDX folder or file, or NPY file (required for int8)", "train"),
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the quantized model to `OUT` (required)"},
		&cli.BoolFlag{Name: "overwrite", Usage: "replace OUT if it exists (never the input)"},
		&cli.StringFlag{Name: "precision", Value: "int8", Usage: "int8 (QDQ: per-channel int8 weights, calibrated 8-bit activations) or fp16 (float16 weights and compute, float32 inputs and outputs)"},
		&cli.StringFlag{Name: "method", Value: "minmax", Usage: "int8 calibration: minmax or percentile"},
		&cli.Float64Flag{Name: "percentile", Value: quantize.DefaultPercentile, Usage: "`P` of --method percentile: the grid covers the (100-P)-th to P-th percentile"},
		&cli.IntFlag{Name: "samples", Value: quantize.DefaultSamples, Usage: "calibrate on `N` samples of --data, drawn at random (seed 1)"},
		&cli.StringFlag{Name: "activations", Value: "uint8", Usage: "int8 activation type: uint8 (ONNX Runtime's fast path on x86-64) or int8"},
		&cli.StringFlag{Name: "keep-fp32", Usage: "fp16: comma-separated operator types left in float32 (default: those ONNX Runtime's CPU provider lacks float16 kernels for, " + strings.Join(quantize.DefaultKeepFloat32(), ",") + ")"},
		&cli.IntFlag{Name: "batch", Value: quantize.DefaultBatch, Usage: "calibration batch `SIZE`"},
		&cli.IntFlag{Name: "threads", Usage: "CPU threads for calibration (0: all cores)"},
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object instead of text"},
	)
	return flagsAnywhere(&cli.Command{
		Name:      "quantize",
		Usage:     "write an int8 (QDQ) or fp16 copy of a model for ONNX Runtime and other runtimes",
		ArgsUsage: "IN -o OUT [--data DIR] [--precision int8|fp16]",
		Description: `Rewrites any model lprconv's engine runs, compressed or not, for deployment:

int8: QuantizeLinear/DequantizeLinear (QDQ) form, opset 13 or later. Conv and
Gemm weights are per-output-channel symmetric int8, biases int32 at scale
input_scale*weight_scale; activations are per-tensor asymmetric uint8 (or
int8), their ranges calibrated by running the model in lprconv's engine over
--samples images of --data (--method minmax or percentile). Relus after a
Conv, Gemm or Add are folded into the quantizer. ONNX Runtime fuses the
result into QLinearConv, QLinearAdd (the LPR module's residual), QGemm,
QLinearConcat and QLinearGlobalAveragePool.

fp16: initializers are stored as float16 and nodes compute in float16,
except operator types in --keep-fp32; inputs and outputs stay float32,
with Cast nodes at the edges.

Examples:
   lprconv quantize model.onnx -o model.int8.onnx --data testdata/images/train --mean 0.286 --std 0.353
   lprconv quantize model.onnx -o model.fp16.onnx --precision fp16`,
		Flags: flags,
	}, func(c *cli.Context, args []string) error {
		if len(args) != 1 {
			return cli.Exit("quantize: expected one IN argument (see lprconv quantize --help)", 2)
		}
		rep, err := runQuantize(c.Context, c, args[0])
		if err != nil {
			return err
		}
		if c.Bool("json") {
			return writeJSON(c.App.Writer, rep)
		}
		return printQuantize(c.App.Writer, rep)
	})
}

// runQuantize reads the flags, quantizes IN and writes OUT.
func runQuantize(ctx context.Context, c *cli.Context, in string) (*quantizeReport, error) {
	usage := func(format string, a ...any) error {
		return cli.Exit(fmt.Sprintf("quantize: "+format, a...), 2)
	}
	out := c.String("output")
	if out == "" {
		return nil, usage("no output file; give -o OUT")
	}
	st, err := os.Stat(in)
	if err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	m, inputs, err := onnxio.LoadFiles(in)
	if err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	// Refuse before any work: the input or a file it references, an
	// existing file without --overwrite, a device, FIFO or folder.
	overwrite := c.Bool("overwrite")
	if _, err := onnxio.CheckOutput(out, nil, onnxio.SaveOptions{}, inputs, overwrite); err != nil {
		return nil, cli.Exit("quantize: "+err.Error(), 2)
	}
	prec, err := quantize.ParsePrecision(c.String("precision"))
	if err != nil || prec == quantize.FP32 {
		return nil, usage("--precision %q: want int8 or fp16", c.String("precision"))
	}
	rep := &quantizeReport{Input: in, Output: out, Precision: string(prec), BytesBefore: st.Size()}
	var opts quantize.Options
	var src dataset.Batches
	if prec == quantize.FP16 && c.IsSet("keep-fp32") {
		opts.FP16.KeepFloat32 = []string{}
		for _, s := range strings.Split(c.String("keep-fp32"), ",") {
			if s = strings.TrimSpace(s); s != "" {
				opts.FP16.KeepFloat32 = append(opts.FP16.KeepFloat32, s)
			}
		}
	}
	if prec == quantize.INT8 {
		if c.String("data") == "" {
			return nil, usage("--data is required for int8: calibration images (an image folder, IDX or NPY path)")
		}
		method, err := quantize.ParseMethod(c.String("method"))
		if err != nil {
			return nil, usage("--method: %v", err)
		}
		opts.Int8 = quantize.Int8Options{Calibrate: quantize.CalibrateOptions{Method: method, Percentile: c.Float64("percentile"),
			Samples: c.Int("samples"), Batch: c.Int("batch"), Threads: c.Int("threads")}}
		switch c.String("activations") {
		case "uint8":
			opts.Int8.Activations = onnxio.Uint8
		case "int8":
			opts.Int8.Activations = onnxio.Int8
		default:
			return nil, usage("--activations %q: want uint8 or int8", c.String("activations"))
		}
		if opts.Int8.Calibrate.Samples < 1 || opts.Int8.Calibrate.Batch < 1 {
			return nil, usage("--samples and --batch must be at least 1")
		}
		rep.Method, rep.Activations = method.String(), c.String("activations")
		mi, err := evaluate.ModelInput(m)
		if err != nil {
			return nil, fmt.Errorf("quantize %s: %w", in, err)
		}
		spec, err := dataSpecFrom(c, mi)
		if err != nil {
			return nil, usage("%v", err)
		}
		// --samples of the images, drawn at random by open rather than read
		// first: a folder of class subfolders lists its images class by class
		if spec.Limit == 0 || spec.Limit > opts.Int8.Calibrate.Samples {
			spec.Limit = opts.Int8.Calibrate.Samples
		}
		dsrc, loader, err := spec.open(opts.Int8.Calibrate.Batch)
		if err != nil {
			return nil, fmt.Errorf("quantize: --data %s: %w", spec.Path, err)
		}
		defer dsrc.Close()
		defer loader.Close()
		src = loader
	}
	m, qr, err := quantize.Convert(ctx, m, prec, src, opts)
	if err != nil {
		return nil, fmt.Errorf("quantize %s: %w", in, err)
	}
	rep.FP16, rep.Int8 = qr.FP16, qr.Int8
	// Files may have appeared during calibration.
	if _, err := onnxio.CheckOutput(out, m, onnxio.SaveOptions{}, inputs, overwrite); err != nil {
		return nil, cli.Exit("quantize: "+err.Error(), 2)
	}
	if err := onnxio.Save(out, m, onnxio.SaveOptions{}); err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	if st, err = os.Stat(out); err != nil {
		return nil, err
	}
	rep.BytesAfter = st.Size()
	return rep, nil
}

func printQuantize(w io.Writer, r *quantizeReport) error {
	fmt.Fprintf(w, "%s -> %s (%s)\n", r.Input, r.Output, r.Precision)
	fmt.Fprintf(w, "file: %d -> %d bytes (%.3fx)\n", r.BytesBefore, r.BytesAfter, float64(r.BytesAfter)/float64(max(r.BytesBefore, 1)))
	if f := r.FP16; f != nil {
		fmt.Fprintf(w, "float16 initializers: %d, casts added: %d\n", f.Initializers, f.Casts)
		fmt.Fprintf(w, "float16 nodes: %s\n", counts(f.Converted))
		fmt.Fprintf(w, "float32 nodes: %s\n", counts(f.Kept))
	}
	if q := r.Int8; q != nil {
		fmt.Fprintf(w, "calibration: %s, activations %s\n", r.Method, r.Activations)
		fmt.Fprintf(w, "int8 weights: %d, int32 biases: %d, quantized activations: %d (%d calibrated), folded Relus: %d\n",
			q.Weights, q.Biases, q.Activations, q.Calibrated, q.FoldedRelu)
		fmt.Fprintf(w, "nodes with quantized inputs: %s\n", counts(q.Nodes))
	}
	return nil
}

// counts formats an operator count map as "Conv 27, Relu 3".
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range quantize.SortedOps(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
