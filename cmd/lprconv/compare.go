package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

func compareCommand() *cli.Command {
	flags := append(dataFlags("images to compare on: image folder, IDX or NPY (or use --random)"),
		&cli.IntFlag{Name: "random", Usage: "compare on `N` standard-normal random inputs instead of --data"},
		&cli.Int64Flag{Name: "seed", Value: 1, Usage: "seed of --random inputs"},
	)
	flags = append(flags, runFlags()...)
	return flagsAnywhere(&cli.Command{
		Name:      "compare",
		Usage:     "measure how closely model B's outputs follow model A's",
		ArgsUsage: "A B (--data DIR | --random N)",
		Description: `Runs both models on the same inputs and prints the fraction of samples
whose top-1 class agrees, the largest and the relative difference of the
logits, their mean cosine similarity, and each model's accuracy when the
data has labels. A is the reference (usually the original model).

Examples:
   lprconv compare testdata/models/mobilenetv1.onnx small.onnx --data testdata/images/test --mean 0.286 --std 0.353
   lprconv compare original.onnx compressed.onnx --random 256 --json`,
		Flags: flags,
	}, func(c *cli.Context, args []string) error {
		if len(args) != 2 {
			return cli.Exit("compare: expected two models A and B (see lprconv compare --help)", 2)
		}
		if c.String("data") == "" && c.Int("random") <= 0 {
			return cli.Exit("compare: give --data DIR or --random N", 2)
		}
		if c.String("data") != "" && c.Int("random") > 0 {
			return cli.Exit("compare: give either --data or --random, not both", 2)
		}
		var models []*onnxpb.ModelProto
		for _, p := range args {
			m, err := onnxio.Load(p)
			if err != nil {
				return err
			}
			models = append(models, m)
		}
		res, err := runEval(c, models)
		if err != nil {
			return fmt.Errorf("compare %s %s: %w", args[0], args[1], err)
		}
		out := evaluate.NewComparison(args[0], args[1], c.String("data"), res)
		if c.Bool("json") {
			err = writeJSON(c.App.Writer, out)
		} else {
			err = printCompare(c.App.Writer, out)
		}
		if err != nil {
			return err
		}
		return nonFiniteExit(c, "compare", res)
	})
}

func printCompare(w io.Writer, r evaluate.Comparison) error {
	data := r.Data
	if data == "" {
		data = "random inputs"
	}
	_, err := fmt.Fprintf(w, "A           %s\nB           %s\ndata        %s (%d samples)\nagreement   %.2f%% (top-1)\nmax |A-B|   %.4g (%.3g relative to max |A|)\nrel. L2     %.4g\ncosine      %.6f\ntop-1       A %s, B %s\ntop-5       A %s, B %s\n",
		r.ModelA, r.ModelB, data, r.Samples, r.Agreement, r.MaxAbs, r.RelativeMaxAbs, r.RelativeL2, r.Cosine,
		fmtPercent(r.Top1A), fmtPercent(r.Top1B), fmtPercent(r.Top5A), fmtPercent(r.Top5B))
	if err == nil && r.NonFiniteA+r.NonFiniteB > 0 {
		_, err = fmt.Fprintf(w, "non-finite  A %d, B %d samples gave NaN or infinite logits (scored as wrong)\n", r.NonFiniteA, r.NonFiniteB)
	}
	return err
}
