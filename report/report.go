// Package report formats the results of a rank sweep: tables in Markdown,
// CSV, JSON and aligned terminal text, and PNG plots drawn with gonum/plot.
// It never computes results; every number it prints comes from the Sweep
// value that the caller fills in.
package report

// LayerRank is the rank chosen for one replaced pointwise convolution.
type LayerRank struct {
	// Name is the ONNX node name of the original Conv.
	Name string `json:"name"`
	// C is the channel count (input = output) of the layer.
	C int `json:"c"`
	// Rank is the inner dimension r of the low-rank product.
	Rank int `json:"rank"`
}

// Row is the result of one sweep configuration (a residual kind and a rank
// ratio or budget) measured against the original model.
type Row struct {
	// Config names the configuration, e.g. "diag_r1-4".
	Config string `json:"config"`
	// Residual is the residual kind (identity, diag, dwKxK, none).
	Residual string `json:"residual"`
	// RankRatio is the rank as a fraction of C (0 when a budget chose ranks).
	RankRatio float64 `json:"rank_ratio"`
	// Budget describes a parameter or FLOP budget, empty when unused.
	Budget string `json:"budget,omitempty"`
	// Precision is the precision the model file is written at (fp16,
	// int8); empty for fp32.
	Precision string `json:"precision,omitempty"`

	// Params, MACs and FileBytes describe the compressed model.
	Params    int64 `json:"params"`
	MACs      int64 `json:"macs"`
	FileBytes int64 `json:"file_bytes"`
	// ParamsRatio, MACsRatio and FileRatio are compressed / original.
	ParamsRatio float64 `json:"params_ratio"`
	MACsRatio   float64 `json:"macs_ratio"`
	FileRatio   float64 `json:"file_ratio"`

	// Agreement is the top-1 agreement with the original model's predictions
	// and Cosine the mean cosine similarity of the logits (fidelity); nil
	// when they could not be measured (an fp16 or int8 file without ONNX
	// Runtime).
	Agreement *float64 `json:"agreement"`
	Cosine    *float64 `json:"cosine"`
	// NonFinite counts fidelity inputs on which the compressed model gave
	// NaN or infinite logits (never agreeing, never correct).
	NonFinite int `json:"nonfinite_samples"`

	// AccBefore and AccAfter are top-1 accuracies on labelled data before and
	// after fine-tuning; nil when no labelled data was given (AccAfter is
	// also nil when the configuration was not fine-tuned).
	AccBefore *float64 `json:"acc_before"`
	AccAfter  *float64 `json:"acc_after"`

	// LatencyMs is the median batch-1 latency in ONNX Runtime and
	// LatencyRatio its ratio to the original measured in the same run; nil
	// when ONNX Runtime is unavailable.
	LatencyMs    *float64 `json:"latency_ms"`
	LatencyRatio *float64 `json:"latency_ratio"`

	// Layers lists the rank chosen for every replaced layer.
	Layers []LayerRank `json:"layers"`
	// Model is the path of the compressed model file.
	Model string `json:"model"`
}

// Baseline describes the original, uncompressed model.
type Baseline struct {
	Params    int64 `json:"params"`
	MACs      int64 `json:"macs"`
	FileBytes int64 `json:"file_bytes"`
	// Accuracy is the top-1 accuracy on labelled data; nil without labels.
	Accuracy *float64 `json:"accuracy"`
	// LatencyMs is the median batch-1 latency in ONNX Runtime; nil when
	// ONNX Runtime is unavailable.
	LatencyMs *float64 `json:"latency_ms"`
}

// LayerSpectrum holds the singular values of one candidate layer's weight,
// in decreasing order.
type LayerSpectrum struct {
	Name     string    `json:"name"`
	C        int       `json:"c"`
	Singular []float64 `json:"singular"`
}

// Meta records where a sweep came from.
type Meta struct {
	// Model is the path of the original model.
	Model string `json:"model"`
	// Date is when the sweep ran (RFC 3339, set by the caller).
	Date string `json:"date"`
	// Command is the command line that produced the sweep.
	Command string `json:"command"`
	// Notes are free-form remarks shown in the Markdown report, such as
	// why latency or fine-tuning is missing.
	Notes []string `json:"notes,omitempty"`
}

// Sweep is the full result of a rank sweep.
type Sweep struct {
	Meta     Meta            `json:"meta"`
	Original Baseline        `json:"original"`
	Rows     []Row           `json:"rows"`
	Spectra  []LayerSpectrum `json:"spectra,omitempty"`
	// Plots are image files, relative to the Markdown report, that
	// WriteMarkdown embeds (typically the base names WritePlots returned).
	Plots []string `json:"plots,omitempty"`
}
