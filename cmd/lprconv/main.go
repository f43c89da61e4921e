// Command lprconv compresses pretrained convolutional networks stored as
// ONNX: it replaces square pointwise convolutions with low-rank pointwise
// residual (LPR) modules, fine-tunes them against the original model, and
// writes a compact ONNX file.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is the lprconv release; set with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run executes the command line and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	// Ctrl-C (or SIGTERM) cancels the context: long work stops cleanly
	// (fine-tuning saves its checkpoint) and nothing half-written is left
	// behind. A second signal ends the process at once (exit code 130),
	// whatever it is waiting for; output files are only ever renamed into
	// place complete, so that loses nothing either.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sigs:
			fmt.Fprintln(stderr, "lprconv: interrupted; stopping (again to quit at once)")
			cancel()
		case <-done:
			return
		}
		select {
		case <-sigs:
			os.Exit(130)
		case <-done:
		}
	}()
	app := newApp(stdout, stderr)
	if err := app.RunContext(ctx, args); err != nil {
		fmt.Fprintf(stderr, "lprconv: %v\n", err)
		if ec, ok := err.(cli.ExitCoder); ok && ec.ExitCode() != 0 {
			return ec.ExitCode()
		}
		return 1
	}
	return 0
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:    "lprconv",
		Usage:   "compress pretrained CNNs with low-rank pointwise residual (LPR) modules",
		Version: version,
		Description: `lprconv reads an ONNX model (MobileNet, ShuffleNetV2, ...), replaces every
pointwise convolution whose input and output widths are equal with an
SVD-initialized low-rank factorization plus a residual, optionally fine-tunes
the new weights against the original, and writes a compact ONNX file.

Examples:
   lprconv inspect testdata/models/mobilenetv1.onnx
   lprconv compress testdata/models/mobilenetv1.onnx --rank-ratio 0.25 -o small.onnx`,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		Commands:             commands(),
		ExitErrHandler:       func(*cli.Context, error) {},
	}
}
