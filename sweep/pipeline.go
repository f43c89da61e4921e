package sweep

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"runtime"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/report"
	"github.com/lprconv/lprconv/svd"
)

// DefaultRandom is the number of random inputs that fidelity is measured
// on when no data is given.
const DefaultRandom = 64

// PipelineOptions configure NewPipeline.
type PipelineOptions struct {
	// Model is the path of the original model.
	Model string
	// Data is a data set (image folder, IDX or NPY) on which fidelity to
	// the original is measured; labels are not needed.
	Data string
	// Samples caps the number of samples read from Data (0: all).
	Samples int
	// Random is the number of random inputs that fidelity is measured on
	// when Data is empty. When both are unset, fidelity uses Eval's images
	// if given and DefaultRandom random inputs otherwise.
	Random int
	// Eval is a labelled data set on which top-1 accuracy is measured.
	Eval string
	// Mean and Std normalise images (one value or one per channel); Fit
	// fits them to the model's input size.
	Mean, Std []float32
	Fit       dataset.Fit
	// BatchSize is the number of samples run at once (default 32).
	BatchSize int
	// Threads is the number of threads one model evaluation uses
	// (default: all CPUs). Results do not depend on it.
	Threads int
	// Seed seeds the randomized SVD and the random inputs.
	Seed uint64
	// Multiple rounds ranks up to a multiple of it (0 or 1: no rounding).
	Multiple int
	// SpectrumResidual is the residual kind whose factored matrix (W − R)
	// the singular-value plots show.
	SpectrumResidual svd.ResidualKind
	// Tool is recorded in the compressed models' metadata; Version is part
	// of the fingerprint, so that a new release recomputes old results.
	Tool, Version string
}

// Pipeline is the Evaluator built from lprconv's stages: convert plans and
// rewrites the model, engine runs it to measure fidelity and accuracy.
type Pipeline struct {
	opts       PipelineOptions
	orig       *onnxpb.ModelProto
	fileBytes  int64
	input      string
	output     string
	chw        [3]int
	fidelityIn batches
	evalIn     batches
	sources    []dataset.Source
	notes      []string
	fp         string

	// Set by Original and read-only afterwards.
	ref     []float32 // reference outputs, outLen per fidelity sample
	outLen  int
	origAcc *float64
}

// NewPipeline loads the model and opens the data sets. Close releases
// them.
func NewPipeline(opts PipelineOptions) (*Pipeline, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 32
	}
	if opts.Threads <= 0 {
		opts.Threads = runtime.NumCPU()
	}
	if opts.Samples < 0 || opts.Random < 0 {
		return nil, fmt.Errorf("sweep: sample and random input counts must not be negative")
	}
	if err := opts.SpectrumResidual.Validate(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(opts.Model)
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	m, err := onnxio.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", opts.Model, err)
	}
	p := &Pipeline{opts: opts, orig: m, fileBytes: int64(len(data))}
	if err := p.findIO(); err != nil {
		return nil, err
	}
	if err := p.openInputs(); err != nil {
		p.Close()
		return nil, err
	}
	sum := sha256.Sum256(data)
	p.fp, err = fingerprint(hex.EncodeToString(sum[:]), opts, p.fidelityIn, p.evalIn)
	if err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// findIO compiles the model once at its default shapes to learn its
// single float input (N,C,H,W) and first output.
func (p *Pipeline) findIO() error {
	prog, err := engine.Compile(p.orig, engine.Options{Threads: 1})
	if err != nil {
		return fmt.Errorf("compile %s: %w", p.opts.Model, err)
	}
	defer prog.Close()
	ins, outs := prog.InputNames(), prog.OutputNames()
	if len(ins) != 1 || len(outs) == 0 {
		return fmt.Errorf("%s: sweep needs a model with one input and at least one output, it has %d inputs and %d outputs", p.opts.Model, len(ins), len(outs))
	}
	p.input, p.output = ins[0], outs[0]
	shape := prog.InputShape(p.input)
	if len(shape) != 4 || !prog.InputDType(p.input).IsFloat() {
		return fmt.Errorf("%s: input %q has shape %v; sweep needs a float image input (N,C,H,W)", p.opts.Model, p.input, shape)
	}
	p.chw = [3]int{shape[1], shape[2], shape[3]}
	return nil
}

// openInputs opens the data sets and chooses the fidelity inputs.
func (p *Pipeline) openInputs() error {
	o := p.opts
	pre := dataset.Preprocess{Channels: p.chw[0], Height: p.chw[1], Width: p.chw[2], Fit: o.Fit, Mean: o.Mean, Std: o.Std}
	if (o.Data != "" || o.Eval != "") && pre.Validate() != nil {
		return fmt.Errorf("sweep: %w", pre.Validate())
	}
	open := func(path string, limit int) (*datasetBatches, error) {
		src, err := dataset.Open(path, dataset.OpenOptions{})
		if err != nil {
			return nil, err
		}
		p.sources = append(p.sources, src)
		if src.Len() == 0 {
			return nil, fmt.Errorf("data set %s is empty", path)
		}
		idx := dataset.Indices(src.Len())
		if limit > 0 {
			idx = dataset.First(idx, limit)
		}
		return &datasetBatches{src: src, idx: idx, pre: pre, batch: o.BatchSize, name: path}, nil
	}
	if o.Eval != "" {
		b, err := open(o.Eval, 0)
		if err != nil {
			return fmt.Errorf("--eval: %w", err)
		}
		if labelled(b.src) == 0 {
			return fmt.Errorf("--eval %s has no labels; give a folder with one sub-folder per class", o.Eval)
		}
		p.evalIn = b
	}
	switch {
	case o.Data != "":
		b, err := open(o.Data, o.Samples)
		if err != nil {
			return fmt.Errorf("--data: %w", err)
		}
		p.fidelityIn = b
	case o.Random > 0 || p.evalIn == nil:
		n := o.Random
		if n == 0 {
			n = DefaultRandom
		}
		p.fidelityIn = &randomBatches{n: n, size: p.chw[0] * p.chw[1] * p.chw[2], batch: o.BatchSize, seed: o.Seed}
	default:
		p.fidelityIn = p.evalIn
	}
	return nil
}

// labelled counts the labelled samples of src (at most the first 1000
// are checked, which is enough to tell a labelled set).
func labelled(src dataset.Source) int {
	n := 0
	for i := 0; i < min(src.Len(), 1000); i++ {
		if s, err := src.Sample(i); err == nil && s.Label >= 0 {
			n++
		}
	}
	return n
}

// fingerprint hashes everything besides the configuration that the
// results depend on.
func fingerprint(modelHash string, o PipelineOptions, fid, eval batches) (string, error) {
	desc := func(b batches) string {
		if b == nil {
			return ""
		}
		return fmt.Sprintf("%s [%d]", b.describe(), b.count())
	}
	data, err := json.Marshal(struct {
		Model, Fidelity, Eval, Version, Fit string
		Mean, Std                           []float32
		Seed                                uint64
		Multiple, Batch                     int
	}{modelHash, desc(fid), desc(eval), o.Version, o.Fit.String(), o.Mean, o.Std, o.Seed, o.Multiple, o.BatchSize})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// Fingerprint implements Evaluator.
func (p *Pipeline) Fingerprint() string { return p.fp }

// Close releases the data sets.
func (p *Pipeline) Close() error {
	var first error
	for _, s := range p.sources {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
	}
	p.sources = nil
	return first
}

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
	md, err := engine.NewModel(p.orig, engine.Options{Threads: p.opts.Threads})
	if err != nil {
		return Original{}, fmt.Errorf("compile %s: %w", p.opts.Model, err)
	}
	defer md.Close()
	p.ref = p.ref[:0]
	var acc evaluate.Accuracy
	err = p.runBoth(ctx, md, func(out []float32, _ []int, n int) error {
		p.outLen = len(out) / n
		p.ref = append(p.ref, out...)
		return nil
	}, func(out []float32, labels []int, n int) error {
		return acc.Add(out, len(out)/n, labels)
	})
	if err != nil {
		return Original{}, err
	}
	if p.evalIn != nil {
		p.origAcc = top1(acc)
		o.Baseline.Accuracy = p.origAcc
	}
	o.Notes = append(o.Notes, "Fidelity (top-1 agreement and mean cosine similarity of the outputs against the original) is measured on "+p.fidelityIn.describe()+
		fmt.Sprintf(" (%d samples).", p.fidelityIn.count()))
	if p.evalIn == nil {
		o.Notes = append(o.Notes, "No labelled data (--eval): accuracy is not measured.")
	} else {
		o.Notes = append(o.Notes, fmt.Sprintf("Accuracy is top-1 on %s (%d samples).", p.evalIn.describe(), p.evalIn.count()))
	}
	o.Notes = append(o.Notes, fmt.Sprintf("Singular values are those of W − R for the %s residual.", p.opts.SpectrumResidual))
	return o, nil
}

// spectra returns the singular values of every candidate's factored
// matrix for the spectrum residual.
func (p *Pipeline) spectra(ctx context.Context) ([]report.LayerSpectrum, error) {
	// A plan that excludes every layer gives each candidate's folded weight
	// without factorizing anything.
	keepAll := svd.Policy{Ratio: 1, Exclude: []*regexp.Regexp{regexp.MustCompile("")}}
	plan, err := convert.NewPlan(ctx, p.orig, keepAll, p.opts.SpectrumResidual, convert.PlanOptions{SVD: p.svdOptions(), Workers: p.opts.Threads})
	if err != nil {
		return nil, fmt.Errorf("find candidates: %w", err)
	}
	var out []report.LayerSpectrum
	for _, l := range plan.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := svd.Spectrum(l.W, l.Channels, l.Channels, p.opts.SpectrumResidual, p.svdOptions())
		if err != nil {
			return nil, fmt.Errorf("layer %q: %w", l.Name, err)
		}
		out = append(out, report.LayerSpectrum{Name: l.Name, C: l.Channels, Singular: s})
	}
	return out, nil
}

func (p *Pipeline) svdOptions() svd.Options { return svd.Options{Seed: p.opts.Seed} }

// run runs md on every batch of in and calls fn with the batch's outputs
// (n rows), labels and size.
func (p *Pipeline) run(ctx context.Context, md *engine.Model, in batches, fn func(out []float32, labels []int, n int) error) error {
	return in.each(ctx, func(x []float32, labels []int, n int) error {
		t := engine.NewTensorF(x, n, p.chw[0], p.chw[1], p.chw[2])
		res, err := md.Run(map[string]*engine.Tensor{p.input: t})
		if err != nil {
			return err
		}
		y := res[p.output]
		if y == nil || len(y.F) == 0 || len(y.F)%n != 0 {
			return fmt.Errorf("output %q: unexpected result for a batch of %d", p.output, n)
		}
		return fn(y.F, labels, n)
	})
}

// Evaluate implements Evaluator: plan and rewrite the model with cfg, save
// it, and measure its size, fidelity and accuracy.
func (p *Pipeline) Evaluate(ctx context.Context, cfg Config, modelPath string) (report.Row, error) {
	kind, err := svd.ParseResidual(cfg.Residual)
	if err != nil {
		return report.Row{}, err
	}
	policy := svd.Policy{Ratio: cfg.Ratio, Multiple: p.opts.Multiple}
	plan, err := convert.NewPlan(ctx, p.orig, policy, kind, convert.PlanOptions{SVD: p.svdOptions(), Workers: p.opts.Threads})
	if err != nil {
		return report.Row{}, fmt.Errorf("plan: %w", err)
	}
	plan.Tool = p.opts.Tool
	m, err := convert.Apply(p.orig, plan)
	if err != nil {
		return report.Row{}, err
	}
	if err := onnxio.Save(modelPath, m, onnxio.SaveOptions{}); err != nil {
		return report.Row{}, err
	}
	st, err := os.Stat(modelPath)
	if err != nil {
		return report.Row{}, err
	}
	row := report.Row{Params: plan.ParamsAfter, MACs: plan.MACsAfter, FileBytes: st.Size()}
	row.ParamsRatio = ratioOf(plan.ParamsAfter, plan.ParamsBefore)
	row.MACsRatio = ratioOf(plan.MACsAfter, plan.MACsBefore)
	row.FileRatio = ratioOf(st.Size(), p.fileBytes)
	row.Layers = []report.LayerRank{}
	for _, l := range plan.Layers {
		if l.Replace {
			row.Layers = append(row.Layers, report.LayerRank{Name: l.Name, C: l.Channels, Rank: l.Rank})
		}
	}
	md, err := engine.NewModel(m, engine.Options{Threads: p.opts.Threads})
	if err != nil {
		return report.Row{}, fmt.Errorf("compile the compressed model: %w", err)
	}
	defer md.Close()
	if err := p.measure(ctx, md, &row); err != nil {
		return report.Row{}, err
	}
	return row, nil
}

// measure fills the fidelity and accuracy of a compressed model.
func (p *Pipeline) measure(ctx context.Context, md *engine.Model, row *report.Row) error {
	var fid evaluate.Fidelity
	var acc evaluate.Accuracy
	done := 0
	err := p.runBoth(ctx, md, func(out []float32, _ []int, n int) error {
		if len(out) != n*p.outLen || (done+n)*p.outLen > len(p.ref) {
			return fmt.Errorf("fidelity: the compressed model gives %d outputs per sample, the original %d", len(out)/n, p.outLen)
		}
		err := fid.Add(p.ref[done*p.outLen:(done+n)*p.outLen], out, p.outLen)
		done += n
		return err
	}, func(out []float32, labels []int, n int) error {
		return acc.Add(out, len(out)/n, labels)
	})
	if err != nil {
		return err
	}
	if fid.N != p.fidelityIn.count() {
		return fmt.Errorf("fidelity: compared %d of %d samples", fid.N, p.fidelityIn.count())
	}
	row.Agreement, row.Cosine = fid.Agreement(), fid.Cosine()
	if p.evalIn != nil {
		row.AccBefore = top1(acc)
	}
	return nil
}

// top1 returns the top-1 accuracy, or nil when no sample was labelled.
func top1(a evaluate.Accuracy) *float64 {
	if a.Labelled == 0 {
		return nil
	}
	v := a.Top1Rate()
	return &v
}

// runBoth runs md on the fidelity inputs, calling fid per batch, and on
// the labelled set, calling eval per batch; when both are the same data
// set it reads it once.
func (p *Pipeline) runBoth(ctx context.Context, md *engine.Model, fid, eval func(out []float32, labels []int, n int) error) error {
	if p.evalIn != nil && p.evalIn == p.fidelityIn {
		return p.run(ctx, md, p.evalIn, func(out []float32, labels []int, n int) error {
			if err := fid(out, labels, n); err != nil {
				return err
			}
			return eval(out, labels, n)
		})
	}
	if err := p.run(ctx, md, p.fidelityIn, fid); err != nil {
		return err
	}
	if p.evalIn != nil {
		return p.run(ctx, md, p.evalIn, eval)
	}
	return nil
}

func ratioOf(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
