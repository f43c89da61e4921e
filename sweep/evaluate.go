package sweep

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/pipeline"
	"github.com/lprconv/lprconv/report"
	"github.com/lprconv/lprconv/svd"
)

// Original implements Evaluator: it counts the original's parameters and
// MACs, computes the singular values of every candidate, and runs it on
// the fidelity inputs (keeping its outputs as the reference) and on the
// labelled set.
func (p *Pipeline) Original(ctx context.Context) (Original, error) {
	sum, err := convert.Inspect(p.orig, convert.ShapeOptions{})
	if err != nil {
		return Original{}, fmt.Errorf("inspect: %w", err)
	}
	o := Original{Baseline: report.Baseline{Params: sum.Params, MACs: sum.MACs, FileBytes: p.fileBytes}}
	if o.Spectra, err = p.spectra(ctx); err != nil {
		return Original{}, err
	}
	eo := evaluate.Options{Batch: p.opts.BatchSize, Threads: p.opts.Threads, Record: &evaluate.Reference{}}
	res, err := p.run(ctx, p.fidelity, eo)
	if err != nil {
		return Original{}, err
	}
	p.ref = eo.Record
	if p.eval != nil {
		if !p.evalIsFidelity {
			if res, err = p.run(ctx, p.eval, evaluate.Options{Batch: p.opts.BatchSize, Threads: p.opts.Threads}); err != nil {
				return Original{}, err
			}
		}
		o.Baseline.Accuracy = evaluate.Rate(res.Models[0].Accuracy.Top1Rate())
	}
	o.Notes = append(o.Notes, "Fidelity (top-1 agreement and mean cosine similarity of the outputs against the original) is measured on "+p.fidelity.String()+
		fmt.Sprintf(" (%d samples).", p.fidelity.Len()))
	if p.eval == nil {
		o.Notes = append(o.Notes, "No labelled data (--eval): accuracy is not measured.")
	} else {
		o.Notes = append(o.Notes, fmt.Sprintf("Accuracy is top-1 on %s (%d samples).", p.eval, p.eval.Len()))
	}
	o.Notes = append(o.Notes, fmt.Sprintf("Singular values are those of W − R for the %s residual.", p.opts.SpectrumResidual))
	o.Notes = append(o.Notes, p.fineTuneNote())
	if p.quantized() {
		o.Notes = append(o.Notes, p.precisionNotes()...)
	}
	return o, nil
}

// run evaluates the original model on one pass of s.
func (p *Pipeline) run(ctx context.Context, s dataset.Samples, o evaluate.Options) (*evaluate.Result, error) {
	r, err := s.Open(p.opts.BatchSize)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	res, err := evaluate.Run(ctx, []*onnxpb.ModelProto{p.orig}, r, o)
	if err != nil {
		return nil, fmt.Errorf("original model: %w", err)
	}
	return res, nil
}

// fineTuneNote says how the configurations were trained.
func (p *Pipeline) fineTuneNote() string {
	ft := p.opts.FineTune
	if ft == nil {
		return "Models are compressed data-free (SVD initialization, no fine-tuning); accuracy is that of the compressed model as written."
	}
	fo := ft.Options
	length := fmt.Sprintf("%d epochs", fo.Epochs)
	if fo.Steps > 0 {
		length = fmt.Sprintf("%d steps", fo.Steps)
	}
	init := "data-free SVD factors"
	if ft.Init != pipeline.InitWeights {
		init = fmt.Sprintf("factors fitted to the activations of %d calibration images", min(ft.Calib, p.train.Len()))
	}
	return fmt.Sprintf("Every configuration is initialized with %s and then distilled from the original (%s loss, %s tensors, peak learning rate %g, batch %d) for %s on %d images of %s; "+
		"\"acc before\" is the accuracy before that training, \"acc after\" after it, and fidelity is measured on the trained model.",
		init, fo.Loss.Kind, fo.Train, fo.LR, fo.Batch, length, p.train.Len(), p.opts.Data)
}

// spectra returns the singular values of every candidate's factored
// matrix for the spectrum residual.
func (p *Pipeline) spectra(ctx context.Context) ([]report.LayerSpectrum, error) {
	// The zero rank rule replaces nothing: the plan gives each candidate's
	// folded weight without factorizing anything.
	plan, err := convert.NewPlan(ctx, p.orig, svd.Policy{}, p.opts.SpectrumResidual, p.planOptions())
	if err != nil {
		return nil, fmt.Errorf("find candidates: %w", err)
	}
	var out []report.LayerSpectrum
	for _, l := range plan.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Non-square layers are factorized without a residual; their
		// energy curve runs over min(C_out, C_in) singular values.
		kind := p.opts.SpectrumResidual
		if l.NonSquare() {
			kind = svd.KindNone
		}
		s, err := svd.Spectrum(l.W, l.Channels, l.InputChannels(), kind, p.planOptions().SVD)
		if err != nil {
			return nil, fmt.Errorf("layer %q: %w", l.Name, err)
		}
		out = append(out, report.LayerSpectrum{Name: l.Name, C: min(l.Channels, l.InputChannels()), Singular: s})
	}
	return out, nil
}

// planOptions are the options every plan of the sweep is made with.
func (p *Pipeline) planOptions() convert.PlanOptions {
	return convert.PlanOptions{SVD: svd.Options{Seed: p.opts.Seed}, Workers: p.opts.Threads, Candidates: p.opts.Candidates, ChannelAlign: p.opts.ChannelAlign}
}

// Evaluate implements Evaluator: one pipeline.Run with cfg's rank ratio or
// budget, fine-tuned when asked, saved to modelPath and measured against
// the original.
func (p *Pipeline) Evaluate(ctx context.Context, cfg Config, modelPath string) (report.Row, error) {
	kind, err := svd.ParseResidual(cfg.Residual)
	if err != nil {
		return report.Row{}, err
	}
	o := pipeline.Options{In: p.opts.Model, Original: p.orig, Out: modelPath, Overwrite: true, Residual: kind, Plan: p.planOptions(),
		Tool: p.opts.Tool, Progress: p.progress(cfg), Precision: p.precision(cfg)}
	if cfg.HasBudget() {
		o.Budget = &pipeline.BudgetOptions{Target: cfg.Budget, Multiple: p.opts.Multiple, Data: p.data, Samples: p.opts.BudgetSamples,
			Seed: int64(p.opts.Seed), Batch: p.opts.BatchSize, Threads: p.opts.Threads, Cache: p.sens}
		if cfg.Budget.Resource == pipeline.LatencyResource {
			lb := p.opts.Latency
			if lb == nil || p.ort == nil {
				return report.Row{}, fmt.Errorf("%s: %s", cfg.Name(), errNoLatencyRuntime)
			}
			o.Latency = &pipeline.Latency{Runtime: p.ort, Batches: lb.Batches, Threads: lb.Threads}
			// One latency budget at a time: their timings would disturb
			// each other.
			p.latency.Lock()
			defer p.latency.Unlock()
		}
	} else {
		o.Rule = svd.Policy{Ratio: cfg.Ratio, Multiple: p.opts.Multiple}
	}
	if p.opts.FineTune != nil {
		ft := *p.opts.FineTune
		ft.Train, ft.Calibration, ft.OnlyReplaced, ft.RemoveCheckpoint = *p.train, p.calib, true, true
		ft.Options.Threads = p.opts.Threads
		ft.Options.CheckpointDir = filepath.Join(filepath.Dir(modelPath), StateDir, cfg.Name()+".ckpt")
		ft.Options.Fingerprint = p.fp + " " + cfg.Name()
		o.FineTune = &ft
	}
	o.Verify = &pipeline.Verify{Fidelity: p.fidelity, Reference: p.ref, Accuracy: p.eval != nil, Before: true,
		Batch: p.opts.BatchSize, Threads: p.opts.Threads}
	if !p.evalIsFidelity {
		o.Verify.Eval = p.eval
	}
	r, err := pipeline.Run(ctx, o)
	if err != nil {
		return report.Row{}, err
	}
	v := r.Verification
	agreement, cosine := v.Agreement, v.Cosine
	row := report.Row{Params: r.ParamsAfter, MACs: r.MACsAfter, FileBytes: r.FileBytesAfter,
		ParamsRatio: r.ParamsRatio, MACsRatio: r.MACsRatio, FileRatio: r.FileRatio,
		Agreement: &agreement, Cosine: &cosine, NonFinite: v.NonFinite, AccBefore: v.Top1, Layers: []report.LayerRank{}}
	if r.FineTune != nil {
		row.AccBefore, row.AccAfter = v.Top1Before, v.Top1
	}
	if cfg.Quantized() {
		// The pipeline measured the float32 model; measure the file.
		if err := p.measureQuantized(ctx, modelPath, &row); err != nil {
			return report.Row{}, fmt.Errorf("%s model %s: %w", cfg.Precision, modelPath, err)
		}
	}
	for _, l := range r.Plan.Layers {
		if l.Replace {
			row.Layers = append(row.Layers, report.LayerRank{Name: l.Name, C: l.Channels, Rank: l.Rank})
		}
	}
	return row, nil
}

// progress logs the messages of cfg's run and its fine-tuning in five
// steps.
func (p *Pipeline) progress(cfg Config) func(pipeline.Event) {
	next := 0
	return func(e pipeline.Event) {
		switch {
		case e.Stage == pipeline.StageFineTune && e.Total > 0:
			if e.Done >= next || e.Done == e.Total {
				p.log.printf("sweep: %s fine-tuning step %d of %d, loss %.4f", cfg.Name(), e.Done, e.Total, e.Loss)
				next = e.Done + max(1, e.Total/5)
			}
		case e.Message != "" && e.Stage != pipeline.StagePlan && e.Stage != pipeline.StageSave && e.Stage != pipeline.StageVerify:
			p.log.printf("sweep: %s: %s", cfg.Name(), e.Message)
		}
	}
}
