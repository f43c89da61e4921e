package sweep

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/ortapi"
	"github.com/lprconv/lprconv/pipeline"
	"github.com/lprconv/lprconv/quantize"
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
	// pipeline.DefaultBudgetSamples); without Data the sensitivity is the
	// weight reconstruction error (for latency budgets the output error
	// on random inputs, as compress measures it).
	BudgetSamples int
	// Latency, when set, lets latency budgets (latency=F) run: ONNX
	// Runtime is loaded from ORTLib (NewPipeline fails without it), and
	// each latency budget times its per-layer table and its result as
	// compress --budget latency=F does. Latency budgets run one at a
	// time, but other configurations (--jobs) may run beside them and
	// disturb their timings.
	Latency *LatencyBudgets
	// SpectrumResidual is the residual kind whose factored matrix (W − R)
	// the singular-value plots show.
	SpectrumResidual svd.ResidualKind
	// Tool is recorded in the compressed models' metadata; Version is part
	// of the fingerprint, so that a new release recomputes old results.
	Tool, Version string
	// FineTune, when set, initializes and distills every configuration on
	// Data before it is measured. Its Train, Calibration, Threads,
	// checkpoint and fingerprint are set per configuration.
	FineTune *pipeline.FineTune
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// Precisions are the precisions the sweep writes models at (see
	// Config.Precision). When fp16 or int8 is among them, ONNX Runtime
	// is loaded from ORTLib (empty: found as ortapi.Find does) to measure
	// those files' fidelity and accuracy; without it they are left
	// empty and a note says why.
	Precisions []quantize.Precision
	ORTLib     string
}

// LatencyBudgets configure the ONNX Runtime measurements of a sweep's
// latency budgets (compress's --latency-batch and --latency-threads).
type LatencyBudgets struct {
	// Batches are the batch sizes measured; the per-layer table is timed
	// at the first (none: 1).
	Batches []int64 `json:",omitempty"`
	// Threads is ONNX Runtime's intra-op thread count (0: 1).
	Threads int `json:",omitempty"`
}

// errNoLatencyRuntime starts the error of a latency budget without ONNX
// Runtime.
const errNoLatencyRuntime = "sweep: --budgets latency=F needs ONNX Runtime (--ort-lib or ONNXRUNTIME_LIB)"

// Pipeline is the Evaluator built on package pipeline: every configuration
// is one pipeline.Run, with the model, data sets, calibration,
// sensitivities and the original's outputs shared by all of them.
type Pipeline struct {
	opts      PipelineOptions
	orig      *onnxpb.ModelProto
	fileBytes int64
	pre       dataset.Preprocess
	// fidelity are the inputs of fidelity, eval the labelled set (nil
	// without --eval); evalIsFidelity when they are the same.
	fidelity       dataset.Samples
	eval           dataset.Samples
	evalIsFidelity bool
	// data is --data (for budgets), train the training images.
	data, train *dataset.Subset
	sources     []dataset.Source
	fp          string
	log         *logger

	// Set by Original and read-only afterwards: the original's outputs on
	// the fidelity inputs.
	ref *evaluate.Reference
	// Caches shared by the configurations.
	calib *pipeline.Calibration
	sens  *pipeline.Sensitivities
	// ort runs the fp16 and int8 files and times latency budgets; nil
	// (with ortErr saying why) without a runtime or when neither is
	// swept.
	ort    *ortapi.Runtime
	ortErr error
	// latency serializes the latency budgets' runs.
	latency sync.Mutex
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
		opts.BudgetSamples = pipeline.DefaultBudgetSamples
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
	p := &Pipeline{opts: opts, orig: m, fileBytes: int64(len(data)), log: newLogger(opts.Log),
		calib: &pipeline.Calibration{}, sens: &pipeline.Sensitivities{}}
	in, err := evaluate.ModelInput(m)
	if err != nil {
		return nil, fmt.Errorf("%s: sweep needs a model with one float image input (N,C,H,W): %w", opts.Model, err)
	}
	p.pre = dataset.Preprocess{Channels: in.Channels, Height: in.Height, Width: in.Width, Fit: opts.Fit, Mean: opts.Mean, Std: opts.Std}
	if err := p.openInputs(); err != nil {
		p.Close()
		return nil, err
	}
	if p.quantized() || opts.Latency != nil {
		if p.ort, p.ortErr = ortapi.Open(opts.ORTLib); p.ortErr != nil {
			p.ort = nil
			if opts.Latency != nil {
				p.Close()
				return nil, fmt.Errorf("%s: %v", errNoLatencyRuntime, p.ortErr)
			}
			p.log.printf("sweep: fp16/int8 files will not be measured: %v", p.ortErr)
		}
	}
	sum := sha256.Sum256(data)
	p.fp, err = fingerprint(hex.EncodeToString(sum[:]), opts, p.fidelity, p.eval)
	if err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// openInputs opens the data sets and chooses the fidelity inputs.
func (p *Pipeline) openInputs() error {
	o := p.opts
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
		p.eval = &dataset.Subset{Source: src, Indices: dataset.Indices(src.Len()), Pre: p.pre, Name: o.Eval}
	}
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
		p.data = &dataset.Subset{Source: src, Indices: idx, Pre: p.pre, Name: o.Data}
		if ft := o.FineTune; ft != nil {
			train := dataset.Indices(src.Len())
			if o.Limit > 0 {
				train = dataset.Random(train, o.Limit, ft.Seed)
			}
			if len(train) < ft.Options.Batch {
				return fmt.Errorf("--data: %d training images are fewer than one batch of %d", len(train), ft.Options.Batch)
			}
			p.train = &dataset.Subset{Source: src, Indices: train, Pre: p.pre, Name: o.Data}
		}
	}
	noise := func(n int) dataset.Samples { return dataset.Noise{Count: n, Size: p.pre.Size(), Seed: o.Seed} }
	switch {
	case o.Random > 0:
		p.fidelity = noise(o.Random)
	case p.data != nil && o.FineTune == nil:
		p.fidelity = p.data
	case p.eval != nil:
		p.fidelity, p.evalIsFidelity = p.eval, true
	case p.data != nil:
		p.fidelity = p.data
	default:
		p.fidelity = noise(DefaultRandom)
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
func fingerprint(modelHash string, o PipelineOptions, fid, eval dataset.Samples) (string, error) {
	desc := func(s dataset.Samples) string {
		if s == nil {
			return ""
		}
		return fmt.Sprintf("%s [%d]", s, s.Len())
	}
	type fineTune struct {
		Epochs, Steps, Batch, Warmup, Calib int
		LR, MinLR                           float64
		Optimizer                           any
		Loss                                string
		Temperature, CEWeight               float64
		Train                               string
		DataInit                            bool
		Seed                                int64
		Data                                string
		ValFraction                         float64 `json:",omitempty"`
		// The objective and its extras, left out when unset so that
		// sweeps of logit-only distillation keep their fingerprints.
		Match, Augment, Weigh string  `json:",omitempty"`
		ReconstructSteps      int     `json:",omitempty"`
		Sequential            bool    `json:",omitempty"`
		RankLRRef, RankLRPow  float64 `json:",omitempty"`
		ReconstructLRBoost    float64 `json:",omitempty"`
		LowRankLRBoost        float64 `json:",omitempty"`
		// CalibDraw names how the calibration images are chosen
		// ("random" since they stopped being the first ones), so that
		// results calibrated the old way are not reused.
		CalibDraw string `json:",omitempty"`
	}
	var ft *fineTune
	if f := o.FineTune; f != nil {
		fo := f.Options
		ft = &fineTune{fo.Epochs, fo.Steps, fo.Batch, fo.WarmupSteps, f.Calib, fo.LR, fo.MinLRRatio, fo.Optimizer,
			fo.Loss.Kind.String(), fo.Loss.Temperature, fo.Loss.CEWeight, fo.Train.String(), f.Init != pipeline.InitWeights, f.Seed,
			fmt.Sprintf("%s split=%s labels=%s limit=%d", o.Data, o.Split, o.Labels, o.Limit), f.ValFraction,
			"", "", f.Weigh, f.ReconstructSteps, f.Sequential, fo.RankLRRef, fo.RankLRPower, f.ReconstructLRBoost, fo.LowRankLRBoost, "random"}
		if len(fo.Match) > 0 {
			ft.Match = fmt.Sprintf("%+v", fo.Match)
		}
		if fo.Augment.Enabled() {
			ft.Augment = fmt.Sprintf("%s seed=%d", fo.Augment, fo.Augment.Seed)
		}
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
		// Latency is left out when not set, so that sweeps without
		// latency budgets keep their fingerprints.
		Latency *LatencyBudgets `json:",omitempty"`
	}{modelHash, desc(fid), desc(eval), o.Version, o.Fit.String(), o.Mean, o.Std, o.Seed, o.Multiple, o.BatchSize, ft,
		o.ChannelAlign, o.Candidates.NonSquare,
		fmt.Sprintf("%s split=%s labels=%s limit=%d samples=%d", o.Data, o.Split, o.Labels, o.Limit, o.BudgetSamples), o.Latency})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// Fingerprint implements Evaluator.
func (p *Pipeline) Fingerprint() string { return p.fp }

// quantized reports whether the sweep writes fp16 or int8 models.
func (p *Pipeline) quantized() bool {
	for _, pr := range p.opts.Precisions {
		if (Config{Precision: pr}).Quantized() {
			return true
		}
	}
	return false
}

// Close releases the data sets and ONNX Runtime.
func (p *Pipeline) Close() error {
	var first error
	if p.ort != nil {
		first = p.ort.Close()
		p.ort = nil
	}
	for _, s := range p.sources {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
	}
	p.sources = nil
	return first
}
