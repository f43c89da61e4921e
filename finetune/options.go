package finetune

import (
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Options configure Distill.
type Options struct {
	// Epochs or Steps bound the run (Steps wins when both are set).
	Epochs, Steps int
	// StepsPerEpoch is the number of batches the train source yields per
	// epoch (needed for Epochs, the schedule and resuming).
	StepsPerEpoch int
	// Batch is the batch size of the train source.
	Batch int
	// LR is the peak learning rate; WarmupSteps ramps up to it linearly
	// (default 5% of the run); the rate then decays to MinLRRatio·LR along
	// a cosine.
	LR          float64
	WarmupSteps int
	MinLRRatio  float64
	Optimizer   OptimizerConfig
	Loss        Loss
	Train       TrainSet
	// Threads for the engine (0: all cores).
	Threads int
	// CheckpointDir, when set, holds a checkpoint written every
	// CheckpointEvery steps (default 200), at the end of each epoch, and
	// when ctx is cancelled; a run finding a matching checkpoint there
	// resumes from it.
	CheckpointDir   string
	CheckpointEvery int
	// DivergeFactor stops the run when the loss exceeds this multiple of
	// its running mean (default 50) and 0.01, or is NaN or infinite; and when one
	// update grows the L2 norm of the trained parameters beyond this
	// multiple of max(its value before the update, 1), or makes a parameter
	// NaN or infinite. Both are checked at every step, the first included.
	DivergeFactor float64
	// Progress, when set, is called after every step.
	Progress func(Status)
	// Fingerprint identifies the run's inputs (model, data, options) so
	// that a checkpoint of another run is never resumed.
	Fingerprint string
	// Match is the objective: which values of the student are matched to
	// the teacher's, with weights (see MatchSpec and ParseMatch). Empty
	// means the logits only, with Loss.
	Match []MatchSpec
	// Augment transforms every training batch (seeded by Augment.Seed and
	// the step number) before both models see it; the zero value trains
	// on the images as loaded.
	Augment dataset.Augment
	// Freeze lists substrings of tensor names (ParseFreeze): the tensors
	// of Train whose names contain one of them are not trained, such as
	// "lpr_a.weight" (every module's first factor) or "lpr_res.weight"
	// (the diagonal residual).
	Freeze []string
	// L2SP, when positive, adds the L2-SP penalty λ·Σ (θ − θ₀)² over the
	// trained parameters θ to the loss, pulling them towards θ₀: their
	// values in L2SPAnchor, or in the student given to Distill when it is
	// nil (so that a run after Reconstruct can still be anchored to the
	// data-aware initialization). Its gradient 2λ(θ − θ₀) is added to the
	// loss's before the optimizer step; Report.FinalLoss leaves it out.
	L2SP       float64
	L2SPAnchor *onnxpb.ModelProto
	// SAMRho, when positive, takes every step with sharpness-aware
	// minimization (SAM, Foret et al. 2021): the gradient is taken at
	// θ + ρ·g/‖g‖, g the gradient at θ (over all trained tensors), and
	// applied at θ. Each step then costs two forward and backward passes
	// of the student (the teacher's are shared).
	SAMRho float64
	// RankLRRef, when positive, scales the learning rate of every tensor
	// of an LPR module of rank r below RankLRRef by
	// (RankLRRef/r)^RankLRPower (see rankLRScales): low-rank modules,
	// whose output B·A·x moves less for a given step of each factor
	// entry, take larger steps; the others keep LR.
	RankLRRef, RankLRPower float64
	// LowRankLRBoost, when positive, multiplies the learning rate of every
	// tensor of an LPR module whose rank r keeps at most
	// FisherMaxRankFraction of its C output channels (r ≤ C/4) by that
	// factor, on top of RankLRRef's. The recipe sets it for the
	// Reconstruct stage (Recipe.ReconstructLRBoost).
	LowRankLRBoost float64
	// ChannelWeights weighs the channels of matched feature values: with
	// φ = ChannelWeights[v] (one weight per channel of the NCHW value v,
	// mean 1, see ChannelFisher), v's term becomes
	//
	//	w · Σ_{n,c,h,w} φ_c (s − t)² / Σ t²
	//
	// instead of FeatureLoss. Values without an entry keep FeatureLoss.
	ChannelWeights map[string][]float64

	// fullStudent turns off the shared prefix (see sharedPrefix): the
	// student then computes its frozen front itself. Tests compare both.
	fullStudent bool
}

// Status is the state of a run, given to Options.Progress.
type Status struct {
	Step, Total, Epoch int
	Loss, LR           float64
	// Resumed is set on the status given once when a run resumes from a
	// checkpoint (Step is then the number of steps already done).
	Resumed bool
}

// Data is what Distill trains and validates on.
type Data struct {
	// Train yields training batches (io.EOF ends an epoch); its order
	// should be seeded so that resuming repeats it.
	Train dataset.Batches
	// Seek, when set, positions Train at a batch of an epoch when a run
	// resumes (dataset.Loader.Seek).
	Seek func(epoch, batch int) error
	// Val, when set, yields the held-out validation set, one pass per
	// epoch; the best student by agreement with the teacher is kept.
	Val dataset.Batches
}

// EpochResult is the validation measured after one epoch.
type EpochResult struct {
	Epoch     int      `json:"epoch"`
	Step      int      `json:"step"`
	Loss      float64  `json:"train_loss"`
	Agreement float64  `json:"val_agreement"`
	Top1      *float64 `json:"val_top1,omitempty"`
}

// Report summarizes a run.
type Report struct {
	Steps      int           `json:"steps"`
	Trainable  []string      `json:"trainable"`
	Params     int           `json:"trainable_params"`
	Epochs     []EpochResult `json:"epochs,omitempty"`
	BestEpoch  int           `json:"best_epoch"`
	FinalLoss  float64       `json:"final_loss"`
	Seconds    float64       `json:"seconds"`
	ImagesPerS float64       `json:"images_per_second"`
	Resumed    bool          `json:"resumed"`
	// SharedNodes is the number of the student's nodes that were not run
	// because the teacher computes the same values (the frozen prefix
	// before the first trained tensor; 0 when nothing is shared).
	SharedNodes int `json:"shared_prefix_nodes,omitempty"`
}
