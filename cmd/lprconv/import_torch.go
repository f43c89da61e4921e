package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/ortapi"
	"github.com/lprconv/lprconv/torchexport"
)

// importTorchReport is what import-torch prints with --json.
type importTorchReport struct {
	Into    string `json:"into"`
	Output  string `json:"output"`
	Tensors int    `json:"tensors"`
	// Probe is set when the weights file carries probe outputs (the
	// comparisons are then against PyTorch's outputs).
	Probe       bool     `json:"probe"`
	Samples     int      `json:"samples"`
	EngineRel   *float64 `json:"engine_vs_torch,omitempty"`
	ORTRel      *float64 `json:"ort_vs_torch,omitempty"`
	EngineORT   *float64 `json:"engine_vs_ort,omitempty"`
	ORTNote     string   `json:"ort_note,omitempty"`
	Tolerance   float64  `json:"tolerance"`
	ORTVerified bool     `json:"ort_verified"`
}

func importTorchCommand() *cli.Command {
	return flagsAnywhere(&cli.Command{
		Name:      "import-torch",
		Usage:     "write tensors trained in PyTorch back into the ONNX model",
		ArgsUsage: "WEIGHTS.safetensors --into IN.onnx -o OUT.onnx",
		Description: `Reads the weights file that distill.py (lprconv export-torch) writes,
run/weights.safetensors: the trained tensors keyed by ONNX initializer name, in
the safetensors format (an 8-byte little-endian header length, a JSON header,
the raw bytes; F32, F64, F16, BF16, I64 and I32 are read). Each tensor replaces
the initializer of the same name in IN (the shapes must match); OUT is written
atomically.

The result is verified before the command succeeds: it runs in lprconv's
engine, and in ONNX Runtime when its library is found (--ort-lib), on the probe
inputs stored in the weights file, and the outputs must match PyTorch's within
--tolerance (relative max-abs error). Without probe tensors, the engine and
ONNX Runtime are compared on random inputs. A torch .pt checkpoint is not
read: give the .safetensors file.

Examples:
   lprconv import-torch torch/run/weights.safetensors --into small.onnx -o tuned.onnx`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "into", Usage: "the ONNX model `IN` whose initializers receive the tensors"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the model to `OUT`"},
			&cli.BoolFlag{Name: "overwrite", Usage: "replace OUT if it exists (never IN)"},
			&cli.Float64Flag{Name: "tolerance", Value: 1e-4, Usage: "largest relative max-abs `ERROR` accepted between runtimes"},
			&cli.IntFlag{Name: "threads", Usage: "engine `THREADS` (0: all cores)"},
			&cli.StringFlag{Name: "ort-lib", Usage: "ONNX Runtime library `FILE` to verify OUT in (default: $ONNXRUNTIME_LIB, then the .ci/run cache)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
		},
	}, func(c *cli.Context, args []string) error {
		if len(args) != 1 {
			return cli.Exit("import-torch: expected one weights file (see lprconv import-torch --help)", 2)
		}
		in, out := c.String("into"), c.String("output")
		if in == "" || out == "" {
			return cli.Exit("import-torch: give --into IN.onnx and -o OUT.onnx", 2)
		}
		if err := checkImportOutput(in, out, c.Bool("overwrite")); err != nil {
			return err
		}
		if head, err := readHead(args[0], 4); err == nil && bytes.Equal(head, []byte("PK\x03\x04")) {
			return cli.Exit(fmt.Sprintf("import-torch: %s is a torch checkpoint (zip/pickle); give the weights.safetensors that distill.py writes next to it", args[0]), 2)
		}
		w, err := torchexport.ReadSafetensors(args[0])
		if err != nil {
			return err
		}
		m, err := onnxio.Load(in)
		if err != nil {
			return err
		}
		tuned, names, err := torchexport.Import(m, w)
		if err != nil {
			return fmt.Errorf("%s into %s: %w", args[0], in, err)
		}
		rep := importTorchReport{Into: in, Output: out, Tensors: len(names), Tolerance: c.Float64("tolerance")}
		x, shape, want, err := torchexport.ProbeOrRandom(tuned, w, 4)
		if err != nil {
			return fmt.Errorf("import-torch: %w", err)
		}
		rep.Probe, rep.Samples = want != nil, shape[0]
		ye, err := torchexport.RunEngine(tuned, x, shape, c.Int("threads"))
		if err != nil {
			return fmt.Errorf("import-torch: verify %s: %w", out, err)
		}
		tol := rep.Tolerance
		if want != nil {
			e := torchexport.RelMaxAbs(ye, want)
			rep.EngineRel = &e
			if !(e <= tol) {
				return fmt.Errorf("import-torch: the engine's outputs differ from PyTorch's by %.3g (relative max-abs) > --tolerance %g; nothing written", e, tol)
			}
		}
		if err := onnxio.Save(out, tuned, onnxio.SaveOptions{}); err != nil {
			return err
		}
		if rt, err := ortapi.Open(c.String("ort-lib")); err != nil {
			rep.ORTNote = "not verified in ONNX Runtime: " + err.Error()
		} else {
			defer rt.Close()
			if err := verifyORT(rt, out, x, shape, want, ye, &rep); err != nil {
				return errors.Join(err, os.Remove(out))
			}
		}
		if c.Bool("json") {
			return writeJSON(c.App.Writer, rep)
		}
		printImport(c, rep)
		return nil
	})
}

// verifyORT runs OUT in ONNX Runtime and checks it against PyTorch's probe
// outputs (or the engine's when there are none).
func verifyORT(rt *ortapi.Runtime, out string, x []float32, shape []int, want, engine []float32, rep *importTorchReport) error {
	tuned, err := onnxio.Load(out)
	if err != nil {
		return err
	}
	yo, err := torchexport.RunORT(rt, out, tuned, x, shape)
	if err != nil {
		return fmt.Errorf("import-torch: verify %s: %w", out, err)
	}
	eo := torchexport.RelMaxAbs(engine, yo)
	rep.EngineORT = &eo
	worst := eo
	if want != nil {
		e := torchexport.RelMaxAbs(yo, want)
		rep.ORTRel = &e
		worst = max(worst, e)
	}
	if !(worst <= rep.Tolerance) {
		return fmt.Errorf("import-torch: ONNX Runtime's outputs differ by %.3g (relative max-abs) > --tolerance %g; %s removed", worst, rep.Tolerance, out)
	}
	rep.ORTVerified = true
	return nil
}

func printImport(c *cli.Context, r importTorchReport) {
	w := c.App.Writer
	fmt.Fprintf(w, "wrote %s: %d tensors from the weights file replaced in %s\n", r.Output, r.Tensors, r.Into)
	ref := "PyTorch's probe outputs"
	if !r.Probe {
		ref = "random inputs (the weights file has no probe)"
	}
	fmt.Fprintf(w, "verified on %d samples against %s (relative max-abs error, tolerance %g):\n", r.Samples, ref, r.Tolerance)
	if r.EngineRel != nil {
		fmt.Fprintf(w, "  engine vs torch        %.3g\n", *r.EngineRel)
	}
	if r.ORTRel != nil {
		fmt.Fprintf(w, "  onnxruntime vs torch   %.3g\n", *r.ORTRel)
	}
	if r.EngineORT != nil {
		fmt.Fprintf(w, "  engine vs onnxruntime  %.3g\n", *r.EngineORT)
	}
	if r.ORTNote != "" {
		fmt.Fprintf(w, "  onnxruntime: %s\n", r.ORTNote)
	}
}

// checkImportOutput refuses to write over IN and, without overwrite, over
// an existing OUT.
func checkImportOutput(in, out string, overwrite bool) error {
	ai, _ := filepath.Abs(in)
	ao, _ := filepath.Abs(out)
	if ai == ao {
		return cli.Exit("import-torch: -o must differ from --into (the input is never overwritten)", 2)
	}
	if _, err := os.Stat(out); err == nil && !overwrite {
		return cli.Exit(fmt.Sprintf("import-torch: output %s exists; pass --overwrite to replace it", out), 2)
	}
	return nil
}

// readHead returns the first n bytes of the file.
func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	k, err := f.Read(b)
	return b[:k], err
}
