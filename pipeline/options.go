package pipeline

import (
	"errors"
	"fmt"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/finetune"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/rankalloc"
	"github.com/lprconv/lprconv/svd"
)

// Options configure Run.
type Options struct {
	// In is the path of the original model. Original, when set, is its
	// loaded contents (Run then does not load In again); it is never
	// modified, so that concurrent runs may share it.
	In       string
	Original *onnxpb.ModelProto
	// Out is the path the compressed model is written to (atomically); ""
	// writes nothing (a dry run: FileBytesAfter is the encoded size).
	// ExternalData stores the tensors in a data file next to Out.
	Out          string
	ExternalData bool
	// Overwrite allows Out (and its data file) to replace existing files;
	// never an input file, whatever it says.
	Overwrite bool
	// KeepShapeOps leaves the model's run-time shape arithmetic as it is;
	// by default it is folded into constants after fine-tuning (package
	// shapefold), which changes no floating-point computation.
	KeepShapeOps bool
	// KeepForms writes channel shuffles and diag residuals as the rewrite
	// left them; by default they are rewritten into the forms ONNX Runtime
	// runs faster (package fastform: bit-identical shuffles, diag
	// residuals folded into their input's producer to float32 round-off).
	KeepForms bool
	// Relabel says whether hidden channels are first relabeled (package
	// chanperm: the same function to float32 round-off) so that each
	// module's diag or depthwise residual pairs output and input channels
	// along the largest entries of the layer's low-rank remainder, where
	// it captures more and its scales come out positive. The zero value,
	// RelabelAuto, relabels when nothing is fine-tuned.
	Relabel Relabel
	// Precision, when set to fp16 or int8, converts the compressed model
	// before it is written (package quantize).
	Precision *Precision
	// Inputs are the files the original was read from (onnxio.LoadFiles);
	// Run fills them when it loads In itself. No output may replace one.
	Inputs []string
	// Rule is the rank rule of the layers that Plan.Select does not fix;
	// a Budget replaces it. Residual is the residual kind of the modules.
	Rule     svd.Policy
	Residual svd.ResidualKind
	// Plan sets the input shapes for MAC accounting, the factorization
	// options, workers, candidates, channel alignment and the layer
	// selection (exclusions, per-layer ranks, force).
	Plan convert.PlanOptions
	// Budget, when set, chooses every layer's rank by measured
	// sensitivity instead of Rule.
	Budget *BudgetOptions
	// FineTune, when set, fits the factors to calibration activations and
	// distills the rewritten model from the original.
	FineTune *FineTune
	// Verify, when set, measures the compressed model's fidelity to the
	// original and its accuracy.
	Verify *Verify
	// Latency, when set, measures the original and the compressed model
	// in ONNX Runtime and keeps layers whose replacement does not pay there
	// (see Latency).
	Latency *Latency
	// Tool names the program, recorded in the model's metadata.
	Tool string
	// Progress, when set, receives the stages' messages and progress.
	Progress func(Event)
}

// Budget is a parameter, MAC or latency budget (see rankalloc.ParseBudget).
type Budget = rankalloc.Budget

// InfeasibleError reports a budget below the smallest achievable fraction.
type InfeasibleError = rankalloc.InfeasibleError

// ParseBudget reads a budget: a fraction, params=F, macs=F or latency=F.
func ParseBudget(s string) (Budget, error) { return rankalloc.ParseBudget(s) }

// DefaultBudgetSamples is the number of images on which a budget's
// per-layer sensitivities are measured by default.
const DefaultBudgetSamples = rankalloc.DefaultSamples

// BudgetOptions configure rank allocation for a budget.
type BudgetOptions struct {
	// Target is the budget to meet.
	Target Budget
	// Multiple: the ranks offered are multiples of it (when > 1).
	Multiple int
	// Data, when set, holds the images on which sensitivities are
	// measured (as the KL divergence of the outputs): Samples of them,
	// chosen at random with Seed. Without Data the sensitivity is the
	// weight reconstruction error.
	Data    *dataset.Subset
	Samples int
	Seed    int64
	// Batch is the number of images run at once (a model with a fixed
	// batch size uses its own); Threads the engine threads.
	Batch, Threads int
	// Cache, when set, keeps the measured sensitivities of each residual
	// kind for other runs with the same model, data and options.
	Cache *Sensitivities
}

// Init is the factor initialization before fine-tuning.
type Init string

// Initializations.
const (
	// InitData fits each replaced layer's factors to its calibration
	// activations (keeping the data-free ones where they fit better).
	InitData Init = "data"
	// InitWeights keeps the data-free SVD factors.
	InitWeights Init = "weights"
)

// ParseInit reads an initialization name ("" is InitData).
func ParseInit(s string) (Init, error) {
	switch Init(s) {
	case "", InitData:
		return InitData, nil
	case InitWeights:
		return InitWeights, nil
	}
	return "", fmt.Errorf("%q: want data or weights", s)
}

// FineTune configures data-aware initialization and distillation.
type FineTune struct {
	// Train holds the training images; ValFraction of them (chosen with
	// Seed) are held out to validate after each epoch (0: none).
	Train       dataset.Subset
	ValFraction float64
	// Seed shuffles the training images and splits off the validation set.
	Seed int64
	// Init chooses the factor initialization; Calib is the number of
	// training images whose activations InitData fits (and on which the
	// sequential refit and the channel weights are measured), chosen at
	// random with Seed.
	Init  Init
	Calib int
	// Sequential, with InitData, then refits the replaced layers one at a
	// time in node order on the same calibration images
	// (finetune.SequentialInit).
	Sequential bool
	// Calibration, when set, caches the calibration covariances for other
	// runs with the same model and training images.
	Calibration *Calibration
	// Options are passed to finetune.Distill; StepsPerEpoch and Progress
	// are set by Run. Options.Fingerprint identifies the run, so that a
	// checkpoint in Options.CheckpointDir of another run is not resumed.
	Options finetune.Options
	// ReconstructSteps, when positive, first trains that many steps to
	// reproduce the original's LPR module outputs (finetune.Reconstruct)
	// before distillation; Options.Steps counts the distillation steps
	// after it.
	ReconstructSteps int
	// ReconstructLRBoost, when positive, is Options.LowRankLRBoost in the
	// Reconstruct stage only: the modules of rank r ≤ C/4 reconstruct at
	// that multiple of the learning rate (finetune.Recipe).
	ReconstructLRBoost float64
	// Weigh, when finetune.WeighFisher, weighs the channels of the matched
	// feature values (the Match terms and, with ReconstructSteps, every
	// LPR module's output, less modules of a rank above
	// finetune.FisherMaxRankFraction of their channels) by the original's
	// Fisher information (finetune.ChannelFisher) on the calibration
	// images, computed once before training and used by both stages; ""
	// weighs none.
	Weigh string
	// Recipe, when set, is the data-size recipe (finetune.RecipeFor) the
	// options were chosen from; it is reported, not applied, here.
	Recipe *finetune.Recipe
	// RemoveCheckpoint removes the checkpoint once training has finished.
	RemoveCheckpoint bool
	// OnlyReplaced skips initialization and training when the plan
	// replaces no layer.
	OnlyReplaced bool
	// PeakRSS, when set, reports the process's peak resident set size in
	// bytes; it is recorded after training.
	PeakRSS func() int64
}

// Verify configures the measurement of the compressed model.
type Verify struct {
	// Fidelity are the inputs on which the compressed model's outputs are
	// compared with the original's. Reference, when set, holds the
	// original's outputs on them (evaluate.Options.Record), so that the
	// original is not run again.
	Fidelity  dataset.Samples
	Reference *evaluate.Reference
	// Accuracy measures top-1 accuracy on Eval, or on Fidelity's labels
	// when Eval is nil. Before also measures it before fine-tuning.
	Accuracy, Before bool
	Eval             dataset.Samples
	// Batch is the evaluation batch size (default 64), Threads the
	// engine threads (0: all cores).
	Batch, Threads int
}

// Stage names a step of the pipeline in Events.
type Stage string

// Stages.
const (
	StageRelabel     Stage = "relabel"
	StageBudget      Stage = "sensitivity"
	StagePlan        Stage = "plan"
	StageCalibrate   Stage = "calibrate"
	StageReconstruct Stage = "reconstruct"
	StageFineTune    Stage = "fine-tune"
	StageVerify      Stage = "verify"
	StageSave        Stage = "save"
)

// Event reports progress: a message, or Done of Total units of work
// (sensitivity runs, training steps) with a short Status, or the end of a
// stage's progress (Finished).
type Event struct {
	Stage   Stage
	Message string
	// Done and Total count units of work; Total is 0 for a message.
	Done, Total int
	// Status is a short description of the current unit (loss, rate).
	Status string
	// Loss is the training loss at a fine-tuning step.
	Loss float64
	// Finished marks the end of the stage's progress.
	Finished bool
}

// validate checks the options that Run cannot leave to the stages.
func (o *Options) validate() error {
	if o.In == "" && o.Original == nil {
		return errors.New("pipeline: no input model")
	}
	if err := o.Residual.Validate(); err != nil {
		return err
	}
	if err := needsRuntime(o); err != nil {
		return err
	}
	if ft := o.FineTune; ft != nil {
		if !(ft.ValFraction >= 0 && ft.ValFraction < 1) {
			return fmt.Errorf("fine-tune: validation fraction %v must be in [0, 1)", ft.ValFraction)
		}
		if ft.Options.Batch < 1 {
			return fmt.Errorf("fine-tune: batch %d must be at least 1", ft.Options.Batch)
		}
		if _, err := ParseInit(string(ft.Init)); err != nil {
			return fmt.Errorf("fine-tune: init %w", err)
		}
	}
	if v := o.Verify; v != nil && v.Fidelity == nil {
		return errors.New("verify: no inputs to measure fidelity on")
	}
	return nil
}

// emit sends an event to the Progress callback.
func (o *Options) emit(e Event) {
	if o.Progress != nil {
		o.Progress(e)
	}
}

// logf emits a message of a stage.
func (o *Options) logf(stage Stage, format string, a ...any) {
	o.emit(Event{Stage: stage, Message: fmt.Sprintf(format, a...)})
}

// Resources a Budget may limit.
const (
	Params = rankalloc.Params
	MACs   = rankalloc.MACs
	// LatencyResource limits the measured latency (Latency configures
	// the runtime that measures it).
	LatencyResource = rankalloc.Latency
)

// Relabel says when Run relabels hidden channels (Options.Relabel).
type Relabel int

const (
	// RelabelAuto relabels when nothing is fine-tuned. Data-free, the
	// relabeled fixtures keep up to 24 more points of test accuracy (7 at
	// the default ranks); after fine-tuning on 1,000 or 5,000 images they
	// ended between 0.12 below and 0.05 above the given order
	// (bench/compress/README.md, "Relabeled channels").
	RelabelAuto Relabel = iota
	// RelabelOn always relabels; RelabelOff never does.
	RelabelOn
	RelabelOff
)

// ParseRelabel reads auto, on or off.
func ParseRelabel(s string) (Relabel, error) {
	switch s {
	case "auto", "":
		return RelabelAuto, nil
	case "on":
		return RelabelOn, nil
	case "off":
		return RelabelOff, nil
	}
	return 0, fmt.Errorf("relabel %q: want auto, on or off", s)
}

// String returns auto, on or off.
func (r Relabel) String() string {
	switch r {
	case RelabelOn:
		return "on"
	case RelabelOff:
		return "off"
	}
	return "auto"
}
