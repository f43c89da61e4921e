package quantize

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Method is a calibration method: how an activation's observed values
// become the real range [Min, Max] that its 8-bit grid covers.
type Method int

const (
	// MinMax takes the smallest and largest value seen.
	MinMax Method = iota
	// Percentile takes the (100−p)-th and p-th percentiles of the values
	// seen (p = CalibrateOptions.Percentile), clipping rare outliers so
	// that the grid is finer for the bulk of the values.
	Percentile
)

// String returns the method's command-line name.
func (m Method) String() string {
	switch m {
	case MinMax:
		return "minmax"
	case Percentile:
		return "percentile"
	}
	return fmt.Sprintf("Method(%d)", int(m))
}

// ParseMethod parses "minmax" or "percentile".
func ParseMethod(s string) (Method, error) {
	for _, m := range []Method{MinMax, Percentile} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown calibration method %q (want minmax or percentile)", s)
}

// Calibration defaults.
const (
	DefaultPercentile = 99.999
	DefaultSamples    = 512
	DefaultBatch      = 32
	histogramBins     = 4096
)

// CalibrateOptions tunes Calibrate.
type CalibrateOptions struct {
	Method Method
	// Percentile is p for the Percentile method, in (50, 100]
	// (0: DefaultPercentile).
	Percentile float64
	// Samples bounds the samples read (0: DefaultSamples); they are kept
	// in memory for the Percentile method's second pass.
	Samples int
	// Batch is the size of the batches read from the source (0:
	// DefaultBatch; a dataset.Loader's own batch size must not exceed it);
	// a model with a fixed batch size runs them in chunks of that size.
	// Threads is the engine's thread count (0: all CPUs).
	Batch, Threads int
}

// Range is the real interval an activation's quantization grid covers.
type Range struct {
	Min float32 `json:"min"`
	Max float32 `json:"max"`
}

// Calibrate runs m in lprconv's engine over up to opts.Samples samples of
// src and returns the range of every named float activation (node outputs
// or graph inputs) by opts.Method. MinMax needs one pass; Percentile a
// second one over the same samples, filling a histogram of 4096 bins over
// each value's [min, max].
func Calibrate(ctx context.Context, m *onnxpb.ModelProto, values []string, src dataset.Batches, opts CalibrateOptions) (map[string]Range, error) {
	p := opts.Percentile
	if p == 0 {
		p = DefaultPercentile
	}
	if opts.Method == Percentile && (p <= 50 || p > 100) {
		return nil, fmt.Errorf("calibrate: percentile %g must be in (50, 100]", p)
	}
	limit := opts.Samples
	if limit <= 0 {
		limit = DefaultSamples
	}
	batch := opts.Batch
	if batch <= 0 {
		batch = DefaultBatch
	}
	in, err := evaluate.ModelInput(m)
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	md, err := engine.NewModel(m, engine.Options{Threads: opts.Threads, Outputs: values})
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	defer md.Close()
	size := in.Channels * in.Height * in.Width
	// run feeds n samples of x to the model, in chunks of its fixed batch
	// size if it has one (a short last chunk is left out).
	run := func(x []float32, n int, visit func(name string, v []float32)) error {
		chunk := n
		if in.Batch > 0 {
			chunk = in.Batch
		}
		for i := 0; i+chunk <= n; i += chunk {
			out, err := md.Run(map[string]*engine.Tensor{in.Name: engine.NewTensorF(x[i*size:(i+chunk)*size], chunk, in.Channels, in.Height, in.Width)})
			if err != nil {
				return fmt.Errorf("calibrate: %w", err)
			}
			for _, name := range values {
				t := out[name]
				if t == nil || t.DType != engine.Float32 {
					return fmt.Errorf("calibrate: value %q is not a float activation of the model", name)
				}
				visit(name, t.F)
			}
		}
		return nil
	}
	ranges := map[string]Range{}
	var kept [][]float32 // the batches read, for a second pass
	labels := make([]int, batch)
	seen := 0
	for seen < limit {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		x := make([]float32, batch*size)
		n, err := src.Next(x, labels)
		if errors.Is(err, io.EOF) && n == 0 {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("calibrate: %w", err)
		}
		n = min(n, limit-seen)
		err = run(x, n, func(name string, v []float32) {
			r, ok := ranges[name]
			if !ok {
				r = Range{Min: float32(math.Inf(1)), Max: float32(math.Inf(-1))}
			}
			for _, f := range v {
				r.Min = min(r.Min, f)
				r.Max = max(r.Max, f)
			}
			ranges[name] = r
		})
		if err != nil {
			return nil, err
		}
		if opts.Method == Percentile {
			kept = append(kept, x[:n*size])
		}
		seen += n
	}
	if seen == 0 {
		return nil, errors.New("calibrate: the data holds no samples")
	}
	if opts.Method != Percentile {
		return ranges, nil
	}
	hists := map[string][]int64{}
	for _, x := range kept {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := run(x, len(x)/size, func(name string, v []float32) {
			h := hists[name]
			if h == nil {
				h = make([]int64, histogramBins)
				hists[name] = h
			}
			r := ranges[name]
			w := float64(r.Max) - float64(r.Min)
			for _, f := range v {
				b := 0
				if w > 0 {
					b = min(int((float64(f)-float64(r.Min))/w*histogramBins), histogramBins-1)
				}
				h[b]++
			}
		})
		if err != nil {
			return nil, err
		}
	}
	for name, h := range hists {
		ranges[name] = percentileRange(h, ranges[name], p)
	}
	return ranges, nil
}

// percentileRange returns the (100−p)-th and p-th percentiles of the values
// counted in h, a histogram of equal bins over r: the lower edge of the bin
// where the cumulative count first reaches (1−p/100)·N and the upper edge of
// the bin where it first reaches p/100·N.
func percentileRange(h []int64, r Range, p float64) Range {
	var total int64
	for _, c := range h {
		total += c
	}
	if total == 0 || r.Max <= r.Min {
		return r
	}
	w := (float64(r.Max) - float64(r.Min)) / float64(len(h))
	lo, hi := 0, len(h)-1
	tail := float64(total) * (1 - p/100)
	var cum int64
	for i, c := range h {
		cum += c
		if float64(cum) > tail {
			lo = i
			break
		}
	}
	cum = 0
	for i := len(h) - 1; i >= 0; i-- {
		cum += h[i]
		if float64(cum) > tail {
			hi = i
			break
		}
	}
	return Range{Min: float32(float64(r.Min) + float64(lo)*w), Max: float32(float64(r.Min) + float64(hi+1)*w)}
}
