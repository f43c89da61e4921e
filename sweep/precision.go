package sweep

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/ortapi"
	"github.com/lprconv/lprconv/pipeline"
	"github.com/lprconv/lprconv/report"
)

// The pipeline verifies the float32 model (the engine runs neither fp16
// nor quantized graphs), so the fidelity and accuracy of an fp16 or int8
// configuration are measured here, on the written file, in ONNX Runtime.

// precision returns the pipeline's conversion for cfg, nil for fp32. int8
// calibrates on the training images (--data) when there are any, else on
// the fidelity inputs.
func (p *Pipeline) precision(cfg Config) *pipeline.Precision {
	if !cfg.Quantized() {
		return nil
	}
	return &pipeline.Precision{Precision: cfg.Precision, Data: p.calibrationData()}
}

// calibrationData returns int8's calibration images.
func (p *Pipeline) calibrationData() dataset.Samples {
	switch {
	case p.train != nil:
		return p.train
	case p.data != nil:
		return p.data
	}
	return p.fidelity
}

// precisionNotes say how fp16 and int8 rows are measured.
func (p *Pipeline) precisionNotes() []string {
	notes := []string{fmt.Sprintf("int8 models are calibrated on %s (%d samples).", p.calibrationData(), p.calibrationData().Len())}
	if p.ort == nil {
		notes = append(notes, "Accuracy of fp16/int8 files needs ONNX Runtime ("+p.ortErr.Error()+"): their fidelity and accuracy are left empty; size is that of the written file.")
	} else {
		notes = append(notes, "Fidelity and accuracy of fp16/int8 rows are those of the written file run in ONNX Runtime "+p.ort.Version()+
			" (the engine verifies the float32 model only); parameters and MACs are those of the float32 graph.")
	}
	return notes
}

// measureQuantized replaces row's fidelity and accuracy, which the
// pipeline measured on the float32 model, with those of the fp16 or int8
// file at path run in ONNX Runtime; without a runtime they are left
// empty (nil).
func (p *Pipeline) measureQuantized(ctx context.Context, path string, row *report.Row) error {
	row.Agreement, row.Cosine, row.AccBefore, row.AccAfter, row.NonFinite = nil, nil, nil, nil, 0
	if p.ort == nil {
		return nil
	}
	sess, err := p.ort.NewSessionFromFile(path, ortapi.Options{IntraOpThreads: p.opts.Threads})
	if err != nil {
		return fmt.Errorf("ONNX Runtime: load %s: %w", path, err)
	}
	defer sess.Close()
	if len(sess.Inputs()) != 1 || len(sess.Outputs()) == 0 {
		return fmt.Errorf("ONNX Runtime: %s: want one input and an output, got %d inputs", path, len(sess.Inputs()))
	}
	var fid evaluate.Fidelity
	var acc evaluate.Accuracy
	sample := 0
	err = p.ortPass(ctx, sess, p.fidelity, func(logits []float32, classes int, labels []int) error {
		n := len(labels)
		if classes != p.ref.Classes || sample+n > p.ref.N {
			return fmt.Errorf("%s: %d classes for %d samples from %d, the original gave %d classes for %d samples", path, classes, n, sample, p.ref.Classes, p.ref.N)
		}
		if err := fid.Add(p.ref.Logits[sample*classes:(sample+n)*classes], logits, classes); err != nil {
			return err
		}
		sample += n
		if p.evalIsFidelity {
			return acc.Add(logits, classes, labels)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if p.eval != nil && !p.evalIsFidelity {
		err = p.ortPass(ctx, sess, p.eval, func(logits []float32, classes int, labels []int) error {
			return acc.Add(logits, classes, labels)
		})
		if err != nil {
			return err
		}
	}
	a, c := fid.Agreement(), fid.Cosine()
	row.Agreement, row.Cosine, row.NonFinite = &a, &c, fid.NonFinite
	if p.eval != nil {
		top1 := evaluate.Rate(acc.Top1Rate())
		if p.opts.FineTune != nil {
			row.AccAfter = top1
		} else {
			row.AccBefore = top1
		}
	}
	return nil
}

// ortPass runs sess on one pass over s in batches of the sweep's batch
// size and hands every batch's logits to f.
func (p *Pipeline) ortPass(ctx context.Context, sess *ortapi.Session, s dataset.Samples, f func(logits []float32, classes int, labels []int) error) error {
	batch, size := p.opts.BatchSize, p.pre.Size()
	r, err := s.Open(batch)
	if err != nil {
		return err
	}
	defer r.Close()
	in, out := sess.Inputs()[0].Name, sess.Outputs()[0].Name
	buf, labels := make([]float32, batch*size), make([]int, batch)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.Next(buf, labels)
		if errors.Is(err, io.EOF) && n == 0 {
			return nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s: %w", s, err)
		}
		if n == 0 {
			continue
		}
		res, rerr := sess.Run(map[string]ortapi.Tensor{in: {Shape: []int64{int64(n), int64(p.pre.Channels), int64(p.pre.Height), int64(p.pre.Width)}, Data: buf[:n*size]}}, []string{out})
		if rerr != nil {
			return fmt.Errorf("ONNX Runtime on %s: %w", s, rerr)
		}
		logits := res[out].Data
		if len(logits) == 0 || len(logits)%n != 0 {
			return fmt.Errorf("ONNX Runtime on %s: %d logits for %d samples", s, len(logits), n)
		}
		if err := f(logits, len(logits)/n, labels[:n]); err != nil {
			return err
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
	}
}
