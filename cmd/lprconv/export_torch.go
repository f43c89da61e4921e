package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/torchexport"
)

func exportTorchCommand() *cli.Command {
	return flagsAnywhere(&cli.Command{
		Name:      "export-torch",
		Usage:     "write a PyTorch package (module, DDP distillation script) for a model",
		ArgsUsage: "IN.onnx -o DIR",
		Description: `Writes a self-contained Python package into DIR for training the model
with PyTorch's DistributedDataParallel:

   model.py     a torch.nn.Module generated node by node from the ONNX graph;
                it reads its weights from model.onnx (a copy of IN) with the
                onnx package; parameters map one-to-one to ONNX initializers
   teacher.py   the same for --teacher (the original of a compressed model)
   distill.py   lprconv's distillation recipe (KD loss at a temperature,
                Adam with decoupled weight decay, linear warm-up then cosine,
                LPR-only or all tensors) for torchrun, reading an image or
                IDX folder and writing checkpoints and weights.safetensors
   README.md    how to run it on one GPU, several, and on CPU (gloo)

Bring the trained tensors back with lprconv import-torch. The flags below set
distill.py's defaults; each can be changed on its command line.

Examples:
   lprconv export-torch small.onnx --teacher testdata/models/mobilenetv1.onnx -o torch/ --fit pad --mean 0.286 --std 0.353
   cd torch && torchrun --nproc_per_node 2 distill.py --data ../testdata/images/train --out run`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the package into `DIR` (created when missing)"},
			&cli.StringFlag{Name: "teacher", Usage: "the `MODEL` to distil from, e.g. the uncompressed original (default: IN's own weights)"},
			&cli.IntFlag{Name: "batch", Value: 64, Usage: "default batch `SIZE` per process"},
			&cli.Float64Flag{Name: "lr", Value: 2e-3, Usage: "default peak learning rate `LR`"},
			&cli.Float64Flag{Name: "temperature", Value: 2, Usage: "default softmax temperature `T` of the kd loss"},
			&cli.StringFlag{Name: "train", Value: "lpr", Usage: "default trainable `SET`: lpr or all"},
			&cli.Float64Flag{Name: "val-fraction", Value: 0.1, Usage: "default held-out `FRACTION` (0: none)"},
			&cli.StringFlag{Name: "mean", Usage: "default per-channel `MEAN` (comma-separated)"},
			&cli.StringFlag{Name: "std", Usage: "default per-channel `STD`"},
			&cli.StringFlag{Name: "fit", Value: "resize", Usage: "default `FIT` of other image sizes: resize, crop or pad"},
			&cli.BoolFlag{Name: "overwrite", Usage: "replace an earlier export in DIR"},
		},
	}, func(c *cli.Context, args []string) error {
		if len(args) != 1 {
			return cli.Exit("export-torch: expected one model IN.onnx (see lprconv export-torch --help)", 2)
		}
		dir := c.String("output")
		if dir == "" {
			return cli.Exit("export-torch: no output folder; give -o DIR", 2)
		}
		switch {
		case c.String("train") != "lpr" && c.String("train") != "all":
			return cli.Exit(fmt.Sprintf("export-torch: --train %q: want lpr or all", c.String("train")), 2)
		case c.String("fit") != "resize" && c.String("fit") != "crop" && c.String("fit") != "pad":
			return cli.Exit(fmt.Sprintf("export-torch: --fit %q: want resize, crop or pad", c.String("fit")), 2)
		case c.Int("batch") < 1 || c.Float64("lr") <= 0 || c.Float64("temperature") <= 0:
			return cli.Exit("export-torch: --batch, --lr and --temperature must be positive", 2)
		case c.Float64("val-fraction") < 0 || c.Float64("val-fraction") >= 1:
			return cli.Exit("export-torch: --val-fraction must be in [0, 1)", 2)
		}
		if _, err := os.Stat(filepath.Join(dir, "names.json")); err == nil && !c.Bool("overwrite") {
			return cli.Exit(fmt.Sprintf("export-torch: %s already holds an export; pass --overwrite to replace it", dir), 2)
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("export-torch: %w", err)
		}
		m, err := onnxio.Load(args[0])
		if err != nil {
			return err
		}
		opts := torchexport.Options{Origin: args[0], Recipe: torchexport.Recipe{
			Batch: c.Int("batch"), LR: c.Float64("lr"), Temperature: c.Float64("temperature"), Train: c.String("train"),
			ValFraction: c.Float64("val-fraction"), Mean: strings.ReplaceAll(c.String("mean"), " ", ""), Std: strings.ReplaceAll(c.String("std"), " ", ""), Fit: c.String("fit")}}
		if opts.Recipe.ValFraction == 0 {
			opts.Recipe.ValFraction = -1 // none
		}
		if p := c.String("teacher"); p != "" {
			var t *onnxpb.ModelProto
			if t, err = onnxio.Load(p); err != nil {
				return err
			}
			opts.Teacher, opts.TeacherOrigin = t, p
		}
		res, err := torchexport.Export(dir, m, opts)
		if err != nil {
			return err
		}
		params := 0
		for _, t := range res.Student.Tensors {
			if t.Param {
				params++
			}
		}
		w := c.App.Writer
		fmt.Fprintf(w, "wrote %s: %s\n", dir, strings.Join(res.Files, ", "))
		fmt.Fprintf(w, "model.py: %d nodes, %d initializers (%d parameters; --train lpr trains %d, --train all %d)\n",
			len(m.GetGraph().GetNode()), len(res.Student.Tensors), params, len(res.Trainable["lpr"]), len(res.Trainable["all"]))
		if len(res.Trainable["lpr"]) == 0 && c.String("train") == "lpr" {
			fmt.Fprintln(w, "note: the model has no LPR tensors; run distill.py with --train all (or export with --train all)")
		}
		if res.Teacher == nil {
			fmt.Fprintln(w, "teacher: none given, the student's exported weights teach (see --teacher)")
		}
		fmt.Fprintf(w, "next: cd %s && torchrun --nproc_per_node N distill.py --data TRAIN --out run\n", dir)
		fmt.Fprintf(w, "then: lprconv import-torch %s --into %s -o OUT.onnx\n", filepath.Join(dir, "run", "weights.safetensors"), args[0])
		return nil
	})
}
