package evaluate

import "math"

// Units of every result lprconv prints or writes: sizes are counts (params,
// MACs, bytes); a ratio is compressed / original; agreement, cosine and
// accuracies in Go values and in fields without a unit suffix are rates in
// [0, 1]; JSON fields whose name ends in _percent are percentages.

// Ratio returns a / b, the size of a compressed model relative to the
// original's, or 0 when b is 0.
func Ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Rate returns r, or nil when it is undefined (NaN: no labelled sample).
func Rate(r float64) *float64 {
	if math.IsNaN(r) {
		return nil
	}
	return &r
}

// Percent returns 100·r, or nil when r is undefined (NaN).
func Percent(r float64) *float64 {
	if math.IsNaN(r) {
		return nil
	}
	v := 100 * r
	return &v
}

// ModelReport is one model measured on a data set (`lprconv eval`).
// Accuracies are percentages, as the field names say.
type ModelReport struct {
	Model        string   `json:"model"`
	Data         string   `json:"data"`
	Samples      int      `json:"samples"`
	Labelled     int      `json:"labelled"`
	Top1         *float64 `json:"top1_percent"`
	Top5         *float64 `json:"top5_percent"`
	ImagesPerSec float64  `json:"images_per_second"`
	Batch        int      `json:"batch"`
	ModelSeconds float64  `json:"model_seconds"`
	Classes      int      `json:"classes"`
}

// NewModelReport summarizes model 0 of res, run in batches of batch.
func NewModelReport(model, data string, batch int, res *Result) ModelReport {
	r := res.Models[0]
	return ModelReport{Model: model, Data: data, Samples: r.Accuracy.N, Labelled: r.Accuracy.Labelled,
		Top1: Percent(r.Accuracy.Top1Rate()), Top5: Percent(r.Accuracy.Top5Rate()),
		ImagesPerSec: r.ImagesPerSecond(), Batch: batch, ModelSeconds: r.Seconds, Classes: res.Classes}
}

// Comparison is model B measured against model A on the same inputs
// (`lprconv compare`). Agreement and accuracies are percentages, as the
// field names say; the differences are in the models' output units and
// Cosine is in [-1, 1].
type Comparison struct {
	ModelA         string   `json:"model_a"`
	ModelB         string   `json:"model_b"`
	Data           string   `json:"data,omitempty"`
	Samples        int      `json:"samples"`
	Agreement      float64  `json:"top1_agreement_percent"`
	MaxAbs         float64  `json:"max_abs_diff"`
	RelativeMaxAbs float64  `json:"relative_max_abs_diff"`
	RelativeL2     float64  `json:"relative_l2_diff"`
	Cosine         float64  `json:"cosine"`
	Top1A          *float64 `json:"top1_a_percent"`
	Top1B          *float64 `json:"top1_b_percent"`
	Top5A          *float64 `json:"top5_a_percent"`
	Top5B          *float64 `json:"top5_b_percent"`
}

// NewComparison summarizes res, a Run of models A and B.
func NewComparison(a, b, data string, res *Result) Comparison {
	f := res.Fidelity[0]
	ma, mb := res.Models[0].Accuracy, res.Models[1].Accuracy
	return Comparison{ModelA: a, ModelB: b, Data: data, Samples: f.N,
		Agreement: 100 * f.Agreement(), MaxAbs: f.MaxAbs, RelativeMaxAbs: f.RelativeMaxAbs(), RelativeL2: f.RelativeL2(),
		Cosine: f.Cosine(), Top1A: Percent(ma.Top1Rate()), Top1B: Percent(mb.Top1Rate()),
		Top5A: Percent(ma.Top5Rate()), Top5B: Percent(mb.Top5Rate())}
}
