package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// compareReport is the result of lprconv compare.
type compareReport struct {
	A, B           string   `json:"-"`
	ModelA         string   `json:"model_a"`
	ModelB         string   `json:"model_b"`
	Data           string   `json:"data,omitempty"`
	Samples        int      `json:"samples"`
	Agreement      float64  `json:"top1_agreement"`
	MaxAbs         float64  `json:"max_abs_diff"`
	RelativeMaxAbs float64  `json:"relative_max_abs_diff"`
	RelativeL2     float64  `json:"relative_l2_diff"`
	Cosine         float64  `json:"cosine"`
	Top1A          *float64 `json:"top1_a"`
	Top1B          *float64 `json:"top1_b"`
	Top5A          *float64 `json:"top5_a"`
	Top5B          *float64 `json:"top5_b"`
}

func compareCommand() *cli.Command {
	flags := append(dataFlags("images to compare on: image folder, IDX or NPY (or use --random)"),
		&cli.IntFlag{Name: "random", Usage: "compare on `N` standard-normal random inputs instead of --data"},
		&cli.Int64Flag{Name: "seed", Value: 1, Usage: "seed of --random inputs"},
		&cli.IntFlag{Name: "batch", Value: 64, Usage: "batch `SIZE`"},
		&cli.IntFlag{Name: "threads", Usage: "CPU threads (0: all cores)"},
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object instead of a table"},
	)
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
		f := res.Fidelity[0]
		a, b := res.Models[0].Accuracy, res.Models[1].Accuracy
		out := compareReport{ModelA: args[0], ModelB: args[1], Data: c.String("data"), Samples: f.N,
			Agreement: f.Agreement(), MaxAbs: f.MaxAbs, RelativeMaxAbs: f.RelativeMaxAbs(), RelativeL2: f.RelativeL2(),
			Cosine: f.Cosine(), Top1A: percent(a.Top1Rate()), Top1B: percent(b.Top1Rate()),
			Top5A: percent(a.Top5Rate()), Top5B: percent(b.Top5Rate())}
		if c.Bool("json") {
			return writeJSON(c.App.Writer, out)
		}
		return printCompare(c.App.Writer, out)
	})
}

func printCompare(w io.Writer, r compareReport) error {
	data := r.Data
	if data == "" {
		data = "random inputs"
	}
	_, err := fmt.Fprintf(w, "A           %s\nB           %s\ndata        %s (%d samples)\nagreement   %.2f%% (top-1)\nmax |A-B|   %.4g (%.3g relative to max |A|)\nrel. L2     %.4g\ncosine      %.6f\ntop-1       A %s, B %s\ntop-5       A %s, B %s\n",
		r.ModelA, r.ModelB, data, r.Samples, 100*r.Agreement, r.MaxAbs, r.RelativeMaxAbs, r.RelativeL2, r.Cosine,
		fmtPercent(r.Top1A), fmtPercent(r.Top1B), fmtPercent(r.Top5A), fmtPercent(r.Top5B))
	return err
}
