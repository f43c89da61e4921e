package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

func evalCommand() *cli.Command {
	flags := append(dataFlags("image folder (class per sub-folder), IDX folder or file, or NPY file to evaluate on (required)"),
		runFlags()...)
	return flagsAnywhere(&cli.Command{
		Name:      "eval",
		Usage:     "measure a model's top-1/top-5 accuracy and throughput on labelled images",
		ArgsUsage: "MODEL --data DIR",
		Description: `Runs MODEL with lprconv's own engine over a data set and prints top-1 and
top-5 accuracy (when labels exist) and throughput in images per second.
Images are converted to the model's input shape (gray replicated to its
channels, resized or centre-cropped), scaled to [0,1] and normalized with
--mean/--std or --preset.

Examples:
   lprconv eval testdata/models/mobilenetv1.onnx --data testdata/images/test --mean 0.286 --std 0.353
   lprconv eval model.onnx --data /usr/share/datasets/fashion-mnist --split test --mean 0.286 --std 0.353 --json
   lprconv eval resnet.onnx --data val/ --preset imagenet --fit crop --batch 32`,
		Flags: flags,
	}, func(c *cli.Context, args []string) error {
		if len(args) != 1 {
			return cli.Exit("eval: expected one MODEL argument (see lprconv eval --help)", 2)
		}
		if c.String("data") == "" {
			return cli.Exit("eval: --data is required: an image folder, IDX or NPY path", 2)
		}
		m, err := onnxio.Load(args[0])
		if err != nil {
			return err
		}
		rep, err := runEval(c, []*onnxpb.ModelProto{m})
		if err != nil {
			return fmt.Errorf("eval %s: %w", args[0], err)
		}
		out := evaluate.NewModelReport(args[0], c.String("data"), c.Int("batch"), rep)
		if c.Bool("json") {
			err = writeJSON(c.App.Writer, out)
		} else {
			err = printEval(c.App.Writer, out)
		}
		if err != nil {
			return err
		}
		return nonFiniteExit(c, "eval "+args[0], rep)
	})
}

// runEval opens the data named by the flags and runs models over it.
func runEval(c *cli.Context, models []*onnxpb.ModelProto) (*evaluate.Result, error) {
	in, err := evaluate.ModelInput(models[0])
	if err != nil {
		return nil, err
	}
	batch := c.Int("batch")
	if batch <= 0 {
		return nil, fmt.Errorf("--batch %d: must be at least 1", batch)
	}
	opts := evaluate.Options{Batch: batch, Threads: c.Int("threads")}
	if n := c.Int("random"); c.String("data") == "" && n > 0 {
		r, err := dataset.Noise{Count: n, Size: in.Channels * in.Height * in.Width, Seed: uint64(c.Int64("seed"))}.Open(batch)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		prog := newProgress(c.App.ErrWriter, c.Command.Name, "inputs", n)
		opts.Progress = func(done int) { prog.update(done, "") }
		defer prog.finish()
		return evaluate.Run(c.Context, models, r, opts)
	}
	spec, err := dataSpecFrom(c, in)
	if err != nil {
		return nil, err
	}
	src, loader, err := spec.open(batch)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	defer loader.Close()
	prog := newProgress(c.App.ErrWriter, "eval", "images", loader.Len())
	opts.Progress = func(done int) { prog.update(done, "") }
	defer prog.finish()
	return evaluate.Run(c.Context, models, loader, opts)
}

// runFlags are the flags eval and compare share for running models and
// printing the result: --batch, --threads, --json and --allow-nonfinite.
func runFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "batch", Value: 64, Usage: "batch `SIZE`"},
		&cli.IntFlag{Name: "threads", Usage: "CPU threads (0: all cores)"},
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object instead of a table"},
		allowNonFiniteFlag(),
	}
}

// allowNonFiniteFlag is the flag that lets eval, compare and sweep finish
// with exit code 0 although a model gave NaN or infinite logits.
func allowNonFiniteFlag() cli.Flag {
	return &cli.BoolFlag{Name: "allow-nonfinite", Usage: "exit 0 even when a model gives NaN or infinite logits (they are always scored as wrong)"}
}

// nonFiniteExit returns exit code 3 with the count of non-finite outputs
// when a model of res gave any, unless --allow-nonfinite is set.
func nonFiniteExit(c *cli.Context, what string, res *evaluate.Result) error {
	if c.Bool("allow-nonfinite") {
		return nil
	}
	if err := res.CheckFinite(); err != nil {
		return cli.Exit(fmt.Sprintf("%s: %v (pass --allow-nonfinite to exit 0 anyway)", what, err), 3)
	}
	return nil
}

func fmtPercent(p *float64) string {
	if p == nil {
		return "n/a (no labels)"
	}
	return fmt.Sprintf("%.2f%%", *p)
}

func printEval(w io.Writer, r evaluate.ModelReport) error {
	_, err := fmt.Fprintf(w, "model       %s\ndata        %s (%d samples, %d labelled)\ntop-1       %s\ntop-5       %s\nthroughput  %.1f images/s (batch %d)\n",
		r.Model, r.Data, r.Samples, r.Labelled, fmtPercent(r.Top1), fmtPercent(r.Top5), r.ImagesPerSec, r.Batch)
	if err == nil && r.NonFinite > 0 {
		_, err = fmt.Fprintf(w, "non-finite  %d samples gave NaN or infinite logits (scored as wrong)\n", r.NonFinite)
	}
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
