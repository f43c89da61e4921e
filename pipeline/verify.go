package pipeline

import (
	"context"
	"fmt"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// verifier measures the compressed model of one Run (Options.Verify).
type verifier struct {
	opts *Options
	v    *Verify
	r    *Result
}

// newVerifier prepares the verification of r (inactive without
// Options.Verify).
func newVerifier(opts *Options, r *Result) *verifier {
	return &verifier{opts: opts, v: opts.Verify, r: r}
}

// evalOptions are the options of every evaluation run.
func (v *verifier) evalOptions() evaluate.Options {
	return evaluate.Options{Batch: v.batch(), Threads: v.v.Threads}
}

func (v *verifier) batch() int {
	if v.v.Batch > 0 {
		return v.v.Batch
	}
	return 64
}

// run evaluates models on one pass of s.
func (v *verifier) run(ctx context.Context, models []*onnxpb.ModelProto, s dataset.Samples, o evaluate.Options) (*evaluate.Result, error) {
	rd, err := s.Open(v.batch())
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return evaluate.Run(ctx, models, rd, o)
}

// accuracy returns m's top-1 accuracy on the labelled set (Eval, else
// the fidelity inputs), nil when none is labelled.
func (v *verifier) accuracy(ctx context.Context, m *onnxpb.ModelProto) (*float64, error) {
	s := v.v.Eval
	if s == nil {
		s = v.v.Fidelity
	}
	res, err := v.run(ctx, []*onnxpb.ModelProto{m}, s, v.evalOptions())
	if err != nil {
		return nil, fmt.Errorf("accuracy on %s: %w", s, err)
	}
	return evaluate.Rate(res.Models[0].Accuracy.Top1Rate()), nil
}

// before measures the accuracy of the rewritten model before fine-tuning.
func (v *verifier) before(ctx context.Context) error {
	if v.v == nil || !v.v.Accuracy || !v.v.Before {
		return nil
	}
	acc, err := v.accuracy(ctx, v.r.Model)
	if err != nil {
		return err
	}
	v.r.Verification = &Verification{Top1Before: acc}
	return nil
}

// after measures the final model's fidelity to the original on the
// fidelity inputs and its accuracy.
func (v *verifier) after(ctx context.Context) error {
	if v.v == nil {
		return nil
	}
	if v.r.Verification == nil {
		v.r.Verification = &Verification{}
	}
	out := v.r.Verification
	v.opts.logf(StageVerify, "measuring fidelity on %s", v.v.Fidelity)
	o := v.evalOptions()
	models := []*onnxpb.ModelProto{v.r.Given, v.r.Model}
	if v.v.Reference != nil {
		o.Against = v.v.Reference
		models = models[1:]
	}
	res, err := v.run(ctx, models, v.v.Fidelity, o)
	if err != nil {
		return fmt.Errorf("fidelity on %s: %w", v.v.Fidelity, err)
	}
	f := res.Fidelity[len(res.Fidelity)-1]
	out.Samples, out.Agreement, out.Cosine = f.N, f.Agreement(), f.Cosine()
	out.NonFinite = res.Models[len(models)-1].Accuracy.NonFinite
	if !v.v.Accuracy {
		return nil
	}
	if v.v.Eval == nil {
		out.Top1 = evaluate.Rate(res.Models[len(models)-1].Accuracy.Top1Rate())
		return nil
	}
	out.Top1, err = v.accuracy(ctx, v.r.Model)
	return err
}
