package pipeline

import (
	"github.com/lprconv/lprconv/chanperm"
	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/fastform"
	"github.com/lprconv/lprconv/finetune"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/quantize"
	"github.com/lprconv/lprconv/rankalloc"
	"github.com/lprconv/lprconv/shapefold"
)

// Result is what Run did. Its JSON form is `lprconv compress --json`'s
// output (sizes are counts, ratios compressed / original; the units of
// FineTune's fields are given there).
type Result struct {
	Input  string `json:"input"`
	Output string `json:"output,omitempty"`
	// Residual is the residual kind; DryRun is set when nothing was
	// written.
	Residual string `json:"residual"`
	DryRun   bool   `json:"dry_run"`
	// Given is the model as loaded; Original is the model the plan and
	// fine-tuning start from: Given with its hidden channels relabeled
	// (see Relabel), the same function to float32 round-off, or Given
	// itself. Model is the compressed one and Plan the decisions that
	// made it. Verification compares Model with Given.
	Given    *onnxpb.ModelProto `json:"-"`
	Original *onnxpb.ModelProto `json:"-"`
	Model    *onnxpb.ModelProto `json:"-"`
	Plan     *convert.Plan      `json:"-"`
	// Layers, totals and file sizes. FileBytesAfter is the encoded size
	// when the model was not written (dry run).
	Layers          []convert.LayerPlan `json:"layers"`
	Replaced        int                 `json:"replaced"`
	ParamsBefore    int64               `json:"params_before"`
	ParamsAfter     int64               `json:"params_after"`
	MACsBefore      int64               `json:"macs_before"`
	MACsAfter       int64               `json:"macs_after"`
	FileBytesBefore int64               `json:"file_bytes_before"`
	FileBytesAfter  int64               `json:"file_bytes_after"`
	ParamsRatio     float64             `json:"params_ratio"`
	MACsRatio       float64             `json:"macs_ratio"`
	FileRatio       float64             `json:"file_ratio"`
	// Latency is what was measured in ONNX Runtime (nil without
	// Options.Latency).
	Latency *LatencyResult `json:"latency,omitempty"`
	// Allocation is the budget's rank allocation (nil without a budget).
	Allocation *rankalloc.Allocation `json:"-"`
	// FineTune reports initialization and distillation (nil without).
	FineTune *FineTuneResult `json:"finetune,omitempty"`
	// Verification is the measurement of the compressed model (nil
	// without Options.Verify).
	Verification *Verification `json:"-"`
	// ShapeFold reports the folding of run-time shape arithmetic (nil with
	// Options.KeepShapeOps).
	ShapeFold *shapefold.Report `json:"shape_fold,omitempty"`
	// Relabel reports the relabeling of hidden channels (nil when
	// Options.Relabel left the order, or for a residual it does not serve).
	Relabel *chanperm.Report `json:"relabel,omitempty"`
	// Forms reports the rewrite into faster forms (nil with
	// Options.KeepForms).
	Forms *fastform.Report `json:"forms,omitempty"`
	// Quantize reports the conversion of the written model to fp16 or
	// int8 (nil at fp32). Verification and the parameter and MAC counts
	// are those of the float32 model; FileBytesAfter is the converted file.
	Quantize *quantize.Report `json:"quantize,omitempty"`
}

// FineTuneResult is what initialization and distillation report.
// Accuracies and agreements here are percentages, as in compress's
// printed output; Report's per-epoch Agreement is a rate in [0, 1] and
// its Top1 a percentage (see finetune.EpochResult).
type FineTuneResult struct {
	// Data is the training set, TrainImages and ValImages the sizes of the
	// training and validation split.
	Data        string `json:"data"`
	TrainImages int    `json:"train_images"`
	ValImages   int    `json:"val_images"`
	// Recipe is the data-size recipe the schedule came from (nil when
	// --epochs or --steps chose it).
	Recipe *finetune.Recipe `json:"recipe,omitempty"`
	// Reconstruct is the report of the module-reconstruction stage (nil
	// without one).
	Reconstruct *finetune.Report `json:"reconstruct,omitempty"`
	// Init is the initialization, Layers its per-layer errors (InitData).
	Init   Init                 `json:"init"`
	Layers []finetune.LayerInit `json:"init_layers,omitempty"`
	// Sequential is the per-layer report of FineTune.Sequential
	// (DataFreeErr: the error of the data-aware factors given the
	// compressed student's input; DataAwareErr: the refit's).
	Sequential []finetune.LayerInit `json:"sequential_init,omitempty"`
	// TeacherTop1, BeforeAgree and BeforeTop1 are measured on the
	// validation images before training, in percent: the original's
	// top-1, the untrained model's top-1 agreement with it and its top-1.
	TeacherTop1 *float64 `json:"val_teacher_top1,omitempty"`
	BeforeAgree *float64 `json:"val_agreement_before,omitempty"`
	BeforeTop1  *float64 `json:"val_top1_before,omitempty"`
	// ChannelWeights says how the matched values' channels were weighted
	// (nil: not weighted).
	ChannelWeights *ChannelWeights `json:"channel_weights,omitempty"`
	// Report is finetune.Distill's report.
	Report *finetune.Report `json:"training"`
	// PeakRSSBytes is the peak resident set size after training (0 when
	// not measured).
	PeakRSSBytes int64 `json:"peak_rss_bytes,omitempty"`
}

// ChannelWeights summarizes FineTune.Weigh's weights.
type ChannelWeights struct {
	// Method is the FineTune.Weigh that made them; Values the number of
	// weighted values, Images the number of images they were measured on.
	Method string `json:"method"`
	Values int    `json:"values"`
	Images int    `json:"images"`
}

// Verification is the compressed model measured against the original.
// Rates are in [0, 1].
type Verification struct {
	// Samples is the number of fidelity inputs; Agreement the fraction
	// whose top-1 class matches the original's and Cosine the mean cosine
	// similarity of the outputs.
	Samples   int
	Agreement float64
	Cosine    float64
	// Top1Before and Top1 are the top-1 accuracies before fine-tuning
	// (Verify.Before) and of the final model; nil when not measured.
	Top1Before, Top1 *float64
	// NonFinite counts fidelity inputs on which the final model gave NaN
	// or infinite logits (they never agree).
	NonFinite int
}
