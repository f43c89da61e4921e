package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/chanperm"
	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/fastform"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/rankalloc"
	"github.com/lprconv/lprconv/shapefold"
	"github.com/lprconv/lprconv/svd"
)

// Run compresses one model: it plans (with the budget's allocation when
// Budget is set), initializes the factors from data and rewrites the
// model, fine-tunes it, verifies it and writes it, as opts say. It stops
// with ctx's error when ctx is cancelled; nothing is written then.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	r := &Result{Input: opts.In, Output: opts.Out, Residual: opts.Residual.String(), DryRun: opts.Out == ""}
	if opts.In != "" {
		st, err := os.Stat(opts.In)
		if err != nil {
			return nil, fmt.Errorf("compress: %w", err)
		}
		r.FileBytesBefore = st.Size()
	}
	r.Original = opts.Original
	if r.Original == nil {
		m, inputs, err := onnxio.LoadFiles(opts.In)
		if err != nil {
			return nil, err
		}
		r.Original, opts.Inputs = m, inputs
	}
	r.Given = r.Original
	saveOpts := onnxio.SaveOptions{ExternalData: opts.ExternalData}
	if opts.Out != "" {
		if _, err := onnxio.CheckOutput(opts.Out, nil, saveOpts, opts.Inputs, opts.Overwrite); err != nil {
			return nil, err
		}
	}
	if err := r.relabel(ctx, &opts); err != nil {
		return nil, err
	}
	rule, po := opts.Rule, opts.Plan
	var lat *latencyRun // latency: measure and plan (latency.go)
	if opts.Budget != nil {
		if opts.Budget.Target.Resource == rankalloc.Latency {
			// A latency budget times the layers before allocating.
			if lat = newLatencyRun(opts.Latency, r); lat == nil {
				return nil, fmt.Errorf("%s: %s", errNoRuntimeForBudget, r.Latency.Reason)
			}
		}
		a, err := allocate(ctx, r, &opts, lat)
		if err != nil {
			return nil, err
		}
		r.Allocation = a
		rule, po.Select = svd.Policy{}, a.Selection(opts.Plan.Select)
	}
	opts.logf(StagePlan, "planning %s (residual %s)", opts.In, opts.Residual)
	plan, err := convert.NewPlan(ctx, r.Original, rule, opts.Residual, po)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", opts.In, err)
	}
	if lat == nil {
		lat = newLatencyRun(opts.Latency, r)
		if plan, err = planLatency(ctx, lat, &opts, r, rule, po, plan); err != nil {
			return nil, err
		}
	}
	plan.Tool = opts.Tool
	r.Plan = plan
	opts.logf(StagePlan, "%d candidates, %d to replace", len(plan.Layers), plan.Replaced())
	ft := newFineTuner(&opts, r)
	if err := ft.initialize(ctx); err != nil {
		return nil, err
	}
	if r.Model, err = convert.Apply(r.Original, plan); err != nil {
		return nil, err
	}
	ver := newVerifier(&opts, r)
	if ft.active() {
		if err := ver.before(ctx); err != nil {
			return nil, err
		}
	}
	if err := ft.distill(ctx); err != nil {
		return nil, err
	}
	if err := r.foldShapes(&opts); err != nil {
		return nil, err
	}
	if err := r.rewriteForms(&opts); err != nil {
		return nil, err
	}
	if err := ver.after(ctx); err != nil {
		return nil, err
	}
	if err := r.account(po.Shapes); err != nil {
		return nil, err
	}
	if err := quantizeModel(ctx, &opts, r); err != nil {
		return nil, err
	}
	if err := r.save(&opts); err != nil {
		return nil, err
	}
	lat.measureFinal(r) // latency of the written model (latency.go)
	if lat != nil {
		lat.reportBudget(r.Allocation)
	}
	return r, nil
}

// asWritten returns a rewritten model as Run writes it when nothing is
// fine-tuned: with its shape arithmetic folded unless KeepShapeOps and in
// its faster forms unless KeepForms, so that whole-model latency checks
// time what will be written.
func asWritten(opts *Options, m *onnxpb.ModelProto) (*onnxpb.ModelProto, error) {
	if !opts.KeepShapeOps {
		f, _, err := shapefold.Fold(m)
		if err != nil {
			return nil, err
		}
		m = f
	}
	if !opts.KeepForms {
		f, _, err := fastform.Rewrite(m, formOptions(opts))
		if err != nil {
			return nil, err
		}
		m = f
	}
	return m, nil
}

// formOptions are the fastform rewrites Run applies: a quantized export
// keeps its diag residuals, since a folded V has columns of very
// different scales.
func formOptions(opts *Options) fastform.Options {
	return fastform.Options{NoDiagFold: opts.Precision.active()}
}

// graphRewritten reports whether folding or the faster forms changed the
// written graph (so that it may run differently from the original even
// with no layer replaced).
func (r *Result) graphRewritten() bool {
	return r.ShapeFold != nil && r.ShapeFold.Removed() > 0 || r.Forms != nil && r.Forms.Changed()
}

// rewriteForms rewrites the model into the forms ONNX Runtime runs faster
// (fastform), unless Options.KeepForms.
func (r *Result) rewriteForms(opts *Options) error {
	if opts.KeepForms {
		return nil
	}
	m, rep, err := fastform.Rewrite(r.Model, formOptions(opts))
	if err != nil {
		return err
	}
	r.Model, r.Forms = m, &rep
	if rep.Changed() {
		opts.logf(StageSave, "faster forms: %s", rep)
	}
	return nil
}

// foldShapes replaces the model's run-time shape arithmetic by constants
// (shapefold), unless Options.KeepShapeOps.
func (r *Result) foldShapes(opts *Options) error {
	if opts.KeepShapeOps {
		return nil
	}
	m, rep, err := shapefold.Fold(r.Model)
	if err != nil {
		return err
	}
	r.Model, r.ShapeFold = m, &rep
	if rep.Removed() > 0 {
		opts.logf(StageSave, "folded shape arithmetic: %d of %d nodes removed", rep.Removed(), rep.NodesBefore)
	}
	return nil
}

// account fills the report fields from the plan and the final model.
func (r *Result) account(shapes convert.ShapeOptions) error {
	r.Layers = r.Plan.Layers
	r.Replaced = r.Plan.Replaced()
	r.ParamsBefore, r.MACsBefore = r.Plan.ParamsBefore, r.Plan.MACsBefore
	s, err := convert.Inspect(r.Model, shapes)
	if err != nil {
		return fmt.Errorf("inspect the compressed model: %w", err)
	}
	r.ParamsAfter, r.MACsAfter = s.Params, s.MACs
	r.ParamsRatio = evaluate.Ratio(r.ParamsAfter, r.ParamsBefore)
	r.MACsRatio = evaluate.Ratio(r.MACsAfter, r.MACsBefore)
	return nil
}

// save writes the model (or measures its encoded size on a dry run).
func (r *Result) save(opts *Options) error {
	if opts.Out == "" {
		r.FileBytesAfter = int64(proto.Size(r.Model))
	} else {
		saveOpts := onnxio.SaveOptions{ExternalData: opts.ExternalData}
		// Files can appear during a long run, and a model over 2 GiB gets a
		// data file even without ExternalData: check again with the model.
		if _, err := onnxio.CheckOutput(opts.Out, r.Model, saveOpts, opts.Inputs, opts.Overwrite); err != nil {
			return err
		}
		if err := onnxio.Save(opts.Out, r.Model, saveOpts); err != nil {
			return err
		}
		n, err := writtenBytes(opts.Out, opts.ExternalData)
		if err != nil {
			return err
		}
		r.FileBytesAfter = n
		opts.logf(StageSave, "wrote %s", opts.Out)
	}
	r.FileRatio = evaluate.Ratio(r.FileBytesAfter, r.FileBytesBefore)
	return nil
}

// writtenBytes is the size of the written model plus its external data.
func writtenBytes(path string, external bool) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	n := st.Size()
	if external {
		if d, err := os.Stat(filepath.Join(filepath.Dir(path), onnxio.ExternalDataName(path))); err == nil {
			n += d.Size()
		} else if d, err := os.Stat(onnxio.ExternalDataName(path)); err == nil {
			n += d.Size()
		}
	}
	return n, nil
}

// relabel relabels the original's hidden channels for the diag residual
// (chanperm.Permute) as Options.Relabel says (auto: when nothing is
// fine-tuned), and only for residual kinds with per-channel scales.
// Everything after it (teacher, plan, latency) sees the relabeled
// original, which computes the same function to float32 round-off;
// verification compares with the given model.
func (r *Result) relabel(ctx context.Context, opts *Options) error {
	on := opts.Relabel == RelabelOn || (opts.Relabel == RelabelAuto && opts.FineTune == nil)
	if !on || (opts.Residual.Type != svd.Diag && opts.Residual.Type != svd.Depthwise) {
		return nil
	}
	rule := opts.Rule
	rank := func(c int) int {
		if !rule.HasRule() || rule.NeedsSpectrum() {
			return 0
		}
		k, _, err := rule.Choose(c, c, nil)
		if err != nil {
			return 0
		}
		return k
	}
	opts.logf(StageRelabel, "relabeling hidden channels for the diag residuals")
	m, rep, err := chanperm.Permute(ctx, r.Original, chanperm.Options{Rank: rank, SVD: opts.Plan.SVD})
	if err != nil {
		return fmt.Errorf("relabel channels: %w", err)
	}
	if rep.Groups > 0 {
		r.Original = m
	}
	r.Relabel = rep
	return nil
}
