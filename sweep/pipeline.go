package sweep

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/finetune"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/rankalloc"
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
	// Data is a data set (image folder, IDX or NPY): the training images
	// when FineTune is set, otherwise the inputs on which fidelity to the
	// original is measured (labels are not needed). Split and Labels are
	// passed to dataset.Open.
	Data, Split, Labels string
	// Limit caps the number of samples used from Data (0: all), chosen at
	// random (with Seed for fidelity, FineTune.Seed for training).
	Limit int
	// Random is the number of random inputs that fidelity is measured on.
	// When it is 0, fidelity uses Data (when not fine-tuning), else Eval's
	// images, else Data's, else DefaultRandom random inputs.
	Random int
	// Eval is a labelled data set on which top-1 accuracy is measured (an
	// IDX folder's test split).
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
	// Multiple rounds ranks up to a multiple of it (0 or 1: no rounding);
	// budgets are allocated among ranks that are multiples of it.
	Multiple int
	// ChannelAlign keeps layers whose channel count is not a multiple of
	// it (see convert.PlanOptions.ChannelAlign; 0 or 1: no such rule).
	ChannelAlign int
	// Candidates selects the candidate layers; NonSquare adds 1x1
	// convolutions whose input and output widths differ.
	Candidates convert.CandidateOptions
	// BudgetSamples is the number of Data images on which budget
	// configurations measure per-layer sensitivity (default
	// rankalloc.DefaultSamples); without Data the sensitivity is the
	// weight reconstruction error.
	BudgetSamples int
	// SpectrumResidual is the residual kind whose factored matrix (W − R)
	// the singular-value plots show.
	SpectrumResidual svd.ResidualKind
	// Tool is recorded in the compressed models' metadata; Version is part
	// of the fingerprint, so that a new release recomputes old results.
	Tool, Version string
	// FineTune, when set, distills every configuration from the original
	// on Data before it is measured.
	FineTune *FineTune
	// Log receives progress lines of fine-tuning; nil discards them.
	Log io.Writer
}

// FineTune configures the distillation of every configuration.
type FineTune struct {
	// Options are passed to finetune.Distill. Steps or Epochs, Batch, LR,
	// WarmupSteps, MinLRRatio, Optimizer, Loss and Train are used as given;
	// Threads, StepsPerEpoch, CheckpointDir, Fingerprint and Progress are
	// set per configuration.
	Options finetune.Options
	// DataInit fits each replaced layer's factors to the activations of
	// the first Calib training images before training (finetune.InitFromData).
	DataInit bool
	Calib    int
	// Seed shuffles the training images (and chooses Limit of them).
	Seed int64
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
	pre        dataset.Preprocess
	fidelityIn batches
	evalIn     batches
	trainSrc   dataset.Source
	trainIdx   []int
	sources    []dataset.Source
	fp         string
	log        *logger

	// Set by Original and read-only afterwards.
	ref     []float32 // reference outputs, outLen per fidelity sample
	outLen  int
	origAcc *float64
	covs    map[string]*finetune.Covariance // calibration, for DataInit

	// The data set of Data, for budget sensitivities.
	dataSrc dataset.Source
	dataIdx []int

	// Per-layer sensitivities of budget configurations, measured once per
	// residual kind and shared by all budgets.
	sensMu sync.Mutex
	sens   map[svd.ResidualKind]*sensitivity
}

// sensitivity is the measurement that budgets of one residual share.
type sensitivity struct {
	once sync.Once
	base *convert.Plan
	sens []rankalloc.Sensitivity
	err  error
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
	if opts.BudgetSamples <= 0 {
		opts.BudgetSamples = rankalloc.DefaultSamples
	}
	if opts.Limit < 0 || opts.Random < 0 {
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
	if ft := opts.FineTune; ft != nil {
		if opts.Data == "" {
			return nil, fmt.Errorf("sweep: fine-tuning needs training images (--data)")
		}
		if ft.Options.Batch <= 0 || (ft.Options.Steps <= 0 && ft.Options.Epochs <= 0) || !(ft.Options.LR > 0) {
			return nil, fmt.Errorf("sweep: fine-tuning needs a positive batch size, learning rate, and number of steps or epochs")
		}
	}
	p := &Pipeline{opts: opts, orig: m, fileBytes: int64(len(data)), log: newLogger(opts.Log)}
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
	p.pre = dataset.Preprocess{Channels: p.chw[0], Height: p.chw[1], Width: p.chw[2], Fit: o.Fit, Mean: o.Mean, Std: o.Std}
	if o.Data != "" || o.Eval != "" {
		if err := p.pre.Validate(); err != nil {
			return fmt.Errorf("sweep: %w", err)
		}
	}
	open := func(path string, opts dataset.OpenOptions) (dataset.Source, error) {
		src, err := dataset.Open(path, opts)
		if err != nil {
			return nil, err
		}
		p.sources = append(p.sources, src)
		if src.Len() == 0 {
			return nil, fmt.Errorf("data set %s is empty", path)
		}
		return src, nil
	}
	if o.Eval != "" {
		src, err := open(o.Eval, dataset.OpenOptions{Split: dataset.SplitTest})
		if err != nil {
			return fmt.Errorf("--eval: %w", err)
		}
		if labelled(src) == 0 {
			return fmt.Errorf("--eval %s has no labels; give a folder with one sub-folder per class", o.Eval)
		}
		p.evalIn = &datasetBatches{src: src, idx: dataset.Indices(src.Len()), pre: p.pre, batch: o.BatchSize, name: o.Eval}
	}
	var data *datasetBatches
	if o.Data != "" {
		src, err := open(o.Data, dataset.OpenOptions{Split: o.Split, Labels: o.Labels})
		if err != nil {
			return fmt.Errorf("--data: %w", err)
		}
		idx := dataset.Indices(src.Len())
		if o.Limit > 0 {
			// A seeded random choice, so that class-sorted folders give
			// every class a share.
			idx = dataset.Random(idx, o.Limit, int64(o.Seed))
		}
		data = &datasetBatches{src: src, idx: idx, pre: p.pre, batch: o.BatchSize, name: o.Data}
		p.dataSrc, p.dataIdx = src, idx
		if ft := o.FineTune; ft != nil {
			p.trainSrc, p.trainIdx = src, dataset.Indices(src.Len())
			if o.Limit > 0 {
				p.trainIdx = dataset.Random(p.trainIdx, o.Limit, ft.Seed)
			}
			if len(p.trainIdx) < ft.Options.Batch {
				return fmt.Errorf("--data: %d training images are fewer than one batch of %d", len(p.trainIdx), ft.Options.Batch)
			}
		}
	}
	switch {
	case o.Random > 0:
		p.fidelityIn = &randomBatches{n: o.Random, size: p.pre.Size(), batch: o.BatchSize, seed: o.Seed}
	case data != nil && o.FineTune == nil:
		p.fidelityIn = data
	case p.evalIn != nil:
		p.fidelityIn = p.evalIn
	case data != nil:
		p.fidelityIn = data
	default:
		p.fidelityIn = &randomBatches{n: DefaultRandom, size: p.pre.Size(), batch: o.BatchSize, seed: o.Seed}
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
	type fineTune struct {
		Epochs, Steps, Batch, Warmup, Calib int
		LR, MinLR                           float64
		Optimizer                           finetune.OptimizerConfig
		Loss                                string
		Temperature, CEWeight               float64
		Train                               string
		DataInit                            bool
		Seed                                int64
		Data                                string
	}
	var ft *fineTune
	if f := o.FineTune; f != nil {
		fo := f.Options
		ft = &fineTune{fo.Epochs, fo.Steps, fo.Batch, fo.WarmupSteps, f.Calib, fo.LR, fo.MinLRRatio, fo.Optimizer,
			fo.Loss.Kind.String(), fo.Loss.Temperature, fo.Loss.CEWeight, fo.Train.String(), f.DataInit, f.Seed,
			fmt.Sprintf("%s split=%s labels=%s limit=%d", o.Data, o.Split, o.Labels, o.Limit)}
	}
	data, err := json.Marshal(struct {
		Model, Fidelity, Eval, Version, Fit string
		Mean, Std                           []float32
		Seed                                uint64
		Multiple, Batch                     int
		FineTune                            *fineTune
		ChannelAlign                        int
		NonSquare                           bool
		BudgetData                          string
	}{modelHash, desc(fid), desc(eval), o.Version, o.Fit.String(), o.Mean, o.Std, o.Seed, o.Multiple, o.BatchSize, ft,
		o.ChannelAlign, o.Candidates.NonSquare,
		fmt.Sprintf("%s split=%s labels=%s limit=%d samples=%d", o.Data, o.Split, o.Labels, o.Limit, o.BudgetSamples)})
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
	var inputs []string
	if o.Spectra, inputs, err = p.spectra(ctx); err != nil {
		return Original{}, err
	}
	if ft := p.opts.FineTune; ft != nil && ft.DataInit && len(inputs) > 0 {
		if err := p.calibrate(ctx, inputs); err != nil {
			return Original{}, err
		}
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
	o.Notes = append(o.Notes, p.fineTuneNote())
	return o, nil
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
	if ft.DataInit {
		init = fmt.Sprintf("factors fitted to the activations of %d calibration images", min(ft.Calib, len(p.trainIdx)))
	}
	return fmt.Sprintf("Every configuration is initialized with %s and then distilled from the original (%s loss, %s tensors, peak learning rate %g, batch %d) for %s on %d images of %s; "+
		"\"acc before\" is the accuracy before that training, \"acc after\" after it, and fidelity is measured on the trained model.",
		init, fo.Loss.Kind, fo.Train, fo.LR, fo.Batch, length, len(p.trainIdx), p.opts.Data)
}

// calibrate collects the covariance of every candidate's input on the
// first Calib training images, once for all configurations.
func (p *Pipeline) calibrate(ctx context.Context, inputs []string) error {
	ft := p.opts.FineTune
	n := min(max(ft.Calib, 1), len(p.trainIdx))
	l, err := dataset.NewLoader(p.trainSrc, dataset.First(p.trainIdx, n), p.pre, dataset.LoaderOptions{BatchSize: ft.Options.Batch})
	if err != nil {
		return err
	}
	defer l.Close()
	p.log.printf("sweep: calibrating on %d images of %s", n, p.opts.Data)
	p.covs, err = finetune.Calibrate(ctx, p.orig, inputs, l, ft.Options.Batch, n, p.opts.Threads)
	if err != nil {
		return fmt.Errorf("calibrate: %w", err)
	}
	return nil
}

// spectra returns the singular values of every candidate's factored
// matrix for the spectrum residual.
func (p *Pipeline) spectra(ctx context.Context) ([]report.LayerSpectrum, []string, error) {
	// A plan that excludes every layer gives each candidate's folded weight
	// without factorizing anything.
	keepAll := svd.Policy{Ratio: 1, Exclude: []*regexp.Regexp{regexp.MustCompile("")}}
	plan, err := convert.NewPlan(ctx, p.orig, keepAll, p.opts.SpectrumResidual, p.planOptions())
	if err != nil {
		return nil, nil, fmt.Errorf("find candidates: %w", err)
	}
	var out []report.LayerSpectrum
	var inputs []string
	seen := map[string]bool{}
	for _, l := range plan.Layers {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		// Non-square layers are factorized without a residual; their
		// energy curve runs over min(C_out, C_in) singular values.
		kind := p.opts.SpectrumResidual
		if l.NonSquare() {
			kind = svd.KindNone
		}
		s, err := svd.Spectrum(l.W, l.Channels, l.InputChannels(), kind, p.svdOptions())
		if err != nil {
			return nil, nil, fmt.Errorf("layer %q: %w", l.Name, err)
		}
		out = append(out, report.LayerSpectrum{Name: l.Name, C: min(l.Channels, l.InputChannels()), Singular: s})
		if !seen[l.Input] {
			seen[l.Input] = true
			inputs = append(inputs, l.Input)
		}
	}
	return out, inputs, nil
}

func (p *Pipeline) svdOptions() svd.Options { return svd.Options{Seed: p.opts.Seed} }

// planOptions are the options every plan of the sweep is made with.
func (p *Pipeline) planOptions() convert.PlanOptions {
	return convert.PlanOptions{SVD: p.svdOptions(), Workers: p.opts.Threads, Candidates: p.opts.Candidates, ChannelAlign: p.opts.ChannelAlign}
}

// allocOptions are the rankalloc options of budget configurations with
// residual kind (without Data).
func (p *Pipeline) allocOptions(kind svd.ResidualKind) rankalloc.Options {
	return rankalloc.Options{Base: svd.Policy{Multiple: p.opts.Multiple}, Residual: kind, Plan: p.planOptions(),
		Samples: p.opts.BudgetSamples, Batch: p.opts.BatchSize, Threads: p.opts.Threads}
}

// budgetPolicy allocates per-layer ranks for cfg's budget and returns the
// policy that plans them. The sensitivities are measured once per residual
// kind (on BudgetSamples of Data's images, chosen at random with Seed,
// when Data is given) and shared by every budget.
func (p *Pipeline) budgetPolicy(ctx context.Context, cfg Config, kind svd.ResidualKind) (svd.Policy, error) {
	p.sensMu.Lock()
	if p.sens == nil {
		p.sens = map[svd.ResidualKind]*sensitivity{}
	}
	s := p.sens[kind]
	if s == nil {
		s = &sensitivity{}
		p.sens[kind] = s
	}
	p.sensMu.Unlock()
	s.once.Do(func() { s.base, s.sens, s.err = p.measureSensitivity(ctx, kind) })
	if s.err != nil {
		// A cancelled measurement is tried again by the next caller.
		if ctx.Err() != nil {
			p.sensMu.Lock()
			if p.sens[kind] == s {
				delete(p.sens, kind)
			}
			p.sensMu.Unlock()
		}
		return svd.Policy{}, fmt.Errorf("budget %s: %w", cfg.Budget, s.err)
	}
	a, err := rankalloc.Allocate(p.orig, s.base, s.sens, cfg.Budget, p.allocOptions(kind))
	if err != nil {
		return svd.Policy{}, fmt.Errorf("budget %s: %w", cfg.Budget, err)
	}
	p.log.printf("sweep: %s: budget %s met at %.4f (%d of %d layers replaced, %s sensitivity)",
		cfg.Name(), cfg.Budget, a.Fraction, a.Replaced(), len(a.Layers), a.Metric)
	return a.Policy(), nil
}

// measureSensitivity plans every candidate (none replaced), as
// rankalloc.Run does, and measures the sensitivities of its layers.
func (p *Pipeline) measureSensitivity(ctx context.Context, kind svd.ResidualKind) (*convert.Plan, []rankalloc.Sensitivity, error) {
	keepAll := svd.Policy{Rank: 1, Exclude: []*regexp.Regexp{regexp.MustCompile("")}}
	o := p.allocOptions(kind)
	base, err := convert.NewPlan(ctx, p.orig, keepAll, kind, o.Plan)
	if err != nil {
		return nil, nil, fmt.Errorf("find candidates: %w", err)
	}
	if p.dataSrc != nil {
		in, err := evaluate.ModelInput(p.orig)
		if err != nil {
			return nil, nil, err
		}
		batch := o.Batch
		if in.Batch > 0 {
			batch = in.Batch
		}
		// A seeded random choice, so that class-sorted folders give every
		// class a share.
		idx := dataset.Random(p.dataIdx, min(o.Samples, len(p.dataIdx)), int64(p.opts.Seed))
		l, err := dataset.NewLoader(p.dataSrc, idx, p.pre, dataset.LoaderOptions{BatchSize: batch})
		if err != nil {
			return nil, nil, err
		}
		defer l.Close()
		o.Data = l
	}
	p.log.printf("sweep: measuring per-layer sensitivity (%s) of the %s residual for the budgets", o.Metric(), kind)
	sens, err := rankalloc.Measure(ctx, p.orig, base, o)
	if err != nil {
		return nil, nil, fmt.Errorf("measure sensitivity: %w", err)
	}
	return base, sens, nil
}

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

// Evaluate implements Evaluator: plan and rewrite the model with cfg,
// fine-tune it when asked, save it, and measure its size, fidelity and
// accuracy.
func (p *Pipeline) Evaluate(ctx context.Context, cfg Config, modelPath string) (report.Row, error) {
	kind, err := svd.ParseResidual(cfg.Residual)
	if err != nil {
		return report.Row{}, err
	}
	policy := svd.Policy{Ratio: cfg.Ratio, Multiple: p.opts.Multiple}
	if cfg.HasBudget() {
		if policy, err = p.budgetPolicy(ctx, cfg, kind); err != nil {
			return report.Row{}, err
		}
	}
	plan, err := convert.NewPlan(ctx, p.orig, policy, kind, p.planOptions())
	if err != nil {
		return report.Row{}, fmt.Errorf("plan: %w", err)
	}
	plan.Tool = p.opts.Tool
	ft := p.opts.FineTune
	train := ft != nil && plan.Replaced() > 0
	if train && ft.DataInit {
		if _, err := finetune.InitFromData(ctx, plan, p.covs, p.svdOptions()); err != nil {
			return report.Row{}, err
		}
	}
	m, err := convert.Apply(p.orig, plan)
	if err != nil {
		return report.Row{}, err
	}
	var accBefore *float64
	if train {
		if p.evalIn != nil {
			if accBefore, err = p.accuracy(ctx, m); err != nil {
				return report.Row{}, err
			}
		}
		if m, err = p.distill(ctx, cfg, m, modelPath); err != nil {
			return report.Row{}, err
		}
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
	if train {
		row.AccBefore, row.AccAfter = accBefore, row.AccBefore
	}
	return row, nil
}

// accuracy returns the top-1 accuracy of m on the labelled set.
func (p *Pipeline) accuracy(ctx context.Context, m *onnxpb.ModelProto) (*float64, error) {
	md, err := engine.NewModel(m, engine.Options{Threads: p.opts.Threads})
	if err != nil {
		return nil, fmt.Errorf("compile the compressed model: %w", err)
	}
	defer md.Close()
	var acc evaluate.Accuracy
	err = p.run(ctx, md, p.evalIn, func(out []float32, labels []int, n int) error {
		return acc.Add(out, len(out)/n, labels)
	})
	if err != nil {
		return nil, err
	}
	return top1(acc), nil
}

// distill trains the student against the original on the training images,
// with a checkpoint in the state folder so that an interrupted
// configuration resumes its training.
func (p *Pipeline) distill(ctx context.Context, cfg Config, student *onnxpb.ModelProto, modelPath string) (*onnxpb.ModelProto, error) {
	ft := p.opts.FineTune
	l, err := dataset.NewLoader(p.trainSrc, p.trainIdx, p.pre, dataset.LoaderOptions{BatchSize: ft.Options.Batch,
		Shuffle: true, Reshuffle: true, Seed: ft.Seed, DropLast: true, Workers: 2, Prefetch: 2})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	o := ft.Options
	o.Threads = p.opts.Threads
	o.StepsPerEpoch = l.Batches()
	o.CheckpointDir = filepath.Join(filepath.Dir(modelPath), StateDir, cfg.Name()+".ckpt")
	o.Fingerprint = p.fp + " " + cfg.Name()
	total := o.Steps
	if total <= 0 {
		total = o.Epochs * o.StepsPerEpoch
	}
	next := 0
	o.Progress = func(s finetune.Status) {
		if s.Resumed {
			p.log.printf("sweep: %s resumes fine-tuning at step %d from %s", cfg.Name(), s.Step, o.CheckpointDir)
		}
		if s.Step >= next || s.Step == total {
			p.log.printf("sweep: %s fine-tuning step %d of %d, loss %.4f", cfg.Name(), s.Step, total, s.Loss)
			next = s.Step + max(1, total/5)
		}
	}
	tuned, _, err := finetune.Distill(ctx, p.orig, student, finetune.Data{Train: l, Seek: l.Seek}, o)
	if err != nil {
		return nil, fmt.Errorf("fine-tune: %w", err)
	}
	if err := os.RemoveAll(o.CheckpointDir); err != nil {
		return nil, fmt.Errorf("remove the finished checkpoint: %w", err)
	}
	return tuned, nil
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
