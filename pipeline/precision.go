package pipeline

import (
	"context"
	"fmt"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/quantize"
)

// Precision says at which precision the compressed model is written.
type Precision struct {
	// Precision is fp32 (the default: the model as compressed), fp16 or
	// int8.
	Precision quantize.Precision
	// Options configure the conversion (fp16's float32 operators, int8's
	// calibration).
	Options quantize.Options
	// Data are int8's calibration images; nil means the fine-tuning images
	// (FineTune.Train). The first Options.Int8.Calibrate.Samples are read.
	Data dataset.Samples
}

// active reports whether the model is converted at all.
func (p *Precision) active() bool {
	return p != nil && p.Precision != "" && p.Precision != quantize.FP32
}

// quantizeModel converts r.Model to opts.Precision, after verification and
// accounting (both measure the float32 model) and before the save. Only
// the written file changes: parameter and MAC counts stay those of the
// float32 graph.
func quantizeModel(ctx context.Context, opts *Options, r *Result) error {
	p := opts.Precision
	if !p.active() {
		return nil
	}
	var src dataset.Batches
	if p.Precision == quantize.INT8 {
		data := p.Data
		if data == nil && opts.FineTune != nil {
			data = opts.FineTune.Train
		}
		if data == nil {
			return fmt.Errorf("int8: calibration images are needed (--data)")
		}
		batch := p.Options.Int8.Calibrate.Batch
		if batch <= 0 {
			batch = quantize.DefaultBatch
		}
		rd, err := data.Open(batch)
		if err != nil {
			return fmt.Errorf("int8 calibration on %s: %w", data, err)
		}
		defer rd.Close()
		src = rd
	}
	opts.logf(StageSave, "converting to %s", p.Precision)
	m, rep, err := quantize.Convert(ctx, r.Model, p.Precision, src, p.Options)
	if err != nil {
		return fmt.Errorf("%s: %w", p.Precision, err)
	}
	r.Model, r.Quantize = m, rep
	return nil
}
