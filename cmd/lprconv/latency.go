package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/ortapi"
	"github.com/lprconv/lprconv/pipeline"
)

// defaultLatencyBatch is the larger batch size compress measures latency
// at without --data (with --data it is --batch, the fine-tuning batch).
const defaultLatencyBatch = 64

// latencyFlags are compress's ONNX Runtime flags.
func latencyFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "ort-lib", Usage: "ONNX Runtime library `FILE` to measure latency with (default: $" + ortapi.EnvVar + ", then the .ci/run cache)"},
		&cli.StringFlag{Name: "latency-batch", Usage: fmt.Sprintf("measure latency at these batch `SIZES`, comma-separated (default: 1 and %d, or 1 and --batch with --data)", defaultLatencyBatch)},
		&cli.IntFlag{Name: "latency-threads", Value: 1, Usage: "ONNX Runtime intra-op `THREADS` for latency"},
		&cli.DurationFlag{Name: "latency-time", Value: pipeline.DefaultLatencyBudget, Usage: "time to spend timing models in ONNX Runtime (half on whole models, 30% on single layers; each measurement still takes its least number of rounds); more gives steadier ratios on a busy machine"},
		&cli.BoolFlag{Name: "no-latency", Usage: "do not measure latency (nor plan by it)"},
		&cli.BoolFlag{Name: "keep-slower", Usage: "replace layers even where ONNX Runtime measures the module slower (latency is still reported)"},
	}
}

// latencyFrom reads the latency flags: nil with --no-latency; without a
// loadable ONNX Runtime, a Latency that says why (compress then reports
// "latency not measured"). closeRT releases the runtime.
func latencyFrom(c *cli.Context) (lat *pipeline.Latency, closeRT func(), err error) {
	closeRT = func() {}
	if c.Bool("no-latency") {
		for _, f := range []string{"ort-lib", "latency-batch", "latency-threads", "latency-time", "keep-slower"} {
			if c.IsSet(f) {
				return nil, closeRT, fmt.Errorf("--%s has no effect with --no-latency", f)
			}
		}
		return nil, closeRT, nil
	}
	batches := []int64{1, defaultLatencyBatch}
	if c.String("data") != "" {
		batches[1] = int64(c.Int("batch"))
	}
	if c.IsSet("latency-batch") {
		if batches, err = parseBatches(c.String("latency-batch")); err != nil {
			return nil, closeRT, fmt.Errorf("--latency-batch: %w", err)
		}
	}
	if c.Int("latency-threads") < 1 {
		return nil, closeRT, fmt.Errorf("--latency-threads %d must be at least 1", c.Int("latency-threads"))
	}
	if c.Duration("latency-time") <= 0 {
		return nil, closeRT, fmt.Errorf("--latency-time %s must be positive", c.Duration("latency-time"))
	}
	lat = &pipeline.Latency{Batches: batches, Threads: c.Int("latency-threads"), KeepSlower: c.Bool("keep-slower"), Budget: c.Duration("latency-time")}
	rt, err := ortapi.Open(c.String("ort-lib"))
	if err != nil {
		lat.Unavailable = err.Error()
		return lat, closeRT, nil
	}
	lat.Runtime = rt
	return lat, func() { rt.Close() }, nil
}

// parseBatches reads "1,64".
func parseBatches(s string) ([]int64, error) {
	var out []int64
	for _, f := range strings.Split(s, ",") {
		b, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || b < 1 {
			return nil, fmt.Errorf("%q: want positive batch sizes separated by commas", s)
		}
		out = append(out, b)
	}
	return out, nil
}

// printLatency prints the latency lines of compress's table.
func printLatency(w io.Writer, l *pipeline.LatencyResult) {
	if l == nil {
		return
	}
	if !l.Measured {
		fmt.Fprintf(w, "latency:   not measured: %s\n", l.Reason)
	} else {
		fmt.Fprintf(w, "latency:   %s, %d thread(s), %s; compressed / original, median [95%% interval]\n", l.Runtime, l.Threads, l.Clock)
		for _, b := range l.Batches {
			fmt.Fprintf(w, "  batch %-4d %s -> %s (%s)\n", b.Batch, msText(b.OriginalMs), msText(b.CompressedMs), b)
		}
	}
	if l.Planned {
		kept := 0
		for _, x := range l.Layers {
			if x.Kept {
				kept++
			}
		}
		fmt.Fprintf(w, "  planned by latency: %d of %d layers kept as slower or not measurably faster (--keep-slower replaces them)\n", kept, len(l.Layers))
	}
	for _, n := range l.Notes {
		fmt.Fprintf(w, "  %s\n", n)
	}
	if l.Seconds > 0 {
		fmt.Fprintf(w, "  measuring took %.1f s (%.1f s CPU)\n", l.Seconds, l.CPUSeconds)
	}
}

// msText prints milliseconds with 3 significant digits.
func msText(ms float64) string {
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 1:
		return fmt.Sprintf("%.2f ms", ms)
	}
	return fmt.Sprintf("%.1f µs", ms*1000)
}
