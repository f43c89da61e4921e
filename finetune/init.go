package finetune

import (
	"context"
	"fmt"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/svd"
)

// LayerInit compares the data-free and data-aware factors of one layer by
// their relative output error ‖(W − R − B A) X‖_F / ‖W X‖_F on the
// calibration activations X.
type LayerInit struct {
	Name         string  `json:"name"`
	Channels     int     `json:"channels"`
	Rank         int     `json:"rank"`
	DataFreeErr  float64 `json:"data_free_output_error"`
	DataAwareErr float64 `json:"data_aware_output_error"`
	// Kept is "data" when the data-aware factors replaced the data-free
	// ones, "weights" when the data-free ones fit the activations better.
	Kept string `json:"kept"`
}

// CandidateInputs returns the teacher values whose activations the replaced
// layers of plan read.
func CandidateInputs(plan *convert.Plan) []string {
	var vals []string
	seen := map[string]bool{}
	for _, l := range plan.Layers {
		if l.Replace && !seen[l.Input] {
			seen[l.Input] = true
			vals = append(vals, l.Input)
		}
	}
	return vals
}

// InitFromData replaces the factors of every replaced layer of plan with
// factors fitted to the layer's calibration activations (svd.FactorizeData),
// keeping the data-free ones where they happen to fit the activations
// better, and reports both errors per layer.
func InitFromData(ctx context.Context, plan *convert.Plan, covs map[string]*Covariance, opts svd.Options) ([]LayerInit, error) {
	var out []LayerInit
	for i := range plan.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l := &plan.Layers[i]
		if !l.Replace || l.Factors == nil {
			continue
		}
		in, outC := l.InputChannels(), l.Channels
		cv := covs[l.Input]
		if cv == nil || cv.C != in {
			return nil, fmt.Errorf("data-aware init of %s: no calibration activations of %q with %d channels", l.Name, l.Input, in)
		}
		cov := make([]float64, len(cv.Sum))
		scale := 1 / float64(max(cv.Pixels, 1))
		for k, v := range cv.Sum {
			cov[k] = v * scale
		}
		free, err := svd.OutputError(l.W, l.Factors, cov)
		if err != nil {
			return nil, fmt.Errorf("data-aware init of %s: %w", l.Name, err)
		}
		f, err := svd.FactorizeData(l.W, outC, in, l.Factors.Rank, l.Factors.Residual, cov, opts)
		if err != nil {
			return nil, fmt.Errorf("data-aware init of %s: %w", l.Name, err)
		}
		aware, err := svd.OutputError(l.W, f, cov)
		if err != nil {
			return nil, fmt.Errorf("data-aware init of %s: %w", l.Name, err)
		}
		li := LayerInit{Name: l.Name, Channels: outC, Rank: f.Rank, DataFreeErr: free, DataAwareErr: aware, Kept: "weights"}
		if aware <= free {
			l.Factors = f
			li.Kept = "data"
		}
		out = append(out, li)
	}
	return out, nil
}
