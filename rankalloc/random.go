package rankalloc

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// MinRandomSpread is the least spread (see spread) of the original's
// outputs over the random inputs for MetricRandom to be measured: below
// it the outputs hardly depend on the input, so a layer's error is lost
// on the way to them wherever the signal dies (a ReLU network whose
// activations all fall below zero), and every layer before that point
// would look free to compress.
const MinRandomSpread = 1e-4

// ConstantOutputsError reports that the original's outputs hardly depend
// on the random inputs: MetricRandom cannot be measured (the caller may
// fall back to MetricWeights).
type ConstantOutputsError struct {
	// Inputs is the number of random inputs, Spread the outputs' spread.
	Inputs int
	Spread float64
}

// Error says why the random-input sensitivity was not measured.
func (e *ConstantOutputsError) Error() string {
	return fmt.Sprintf("sensitivity: the model's outputs on %d random inputs hardly depend on the input (spread %.3g < %g): random inputs cannot tell the layers apart", e.Inputs, e.Spread, MinRandomSpread)
}

// spread returns Σ_n ‖y_n − ȳ‖² / Σ_n ‖y_n‖² for the rows y_n (of the
// given width) of y, ȳ their mean: 0 when every input gives the same
// output.
func spread(y []float32, width int) float64 {
	n := len(y) / width
	mean := make([]float64, width)
	for i := 0; i < n; i++ {
		for j, v := range y[i*width : (i+1)*width] {
			mean[j] += float64(v) / float64(n)
		}
	}
	var dev, norm float64
	for i := 0; i < n; i++ {
		for j, v := range y[i*width : (i+1)*width] {
			d := float64(v) - mean[j]
			dev += d * d
			norm += float64(v) * float64(v)
		}
	}
	if norm == 0 {
		return 0
	}
	return dev / norm
}

// CheckRandom runs m on opts.Random random inputs (seeded by
// opts.RandomSeed) and returns a *ConstantOutputsError when its outputs
// hardly depend on them, so that MetricRandom would not tell the layers
// apart; nil when MetricRandom can be measured.
func CheckRandom(m *onnxpb.ModelProto, opts Options) error {
	opts = opts.withDefaults()
	if opts.Data != nil || opts.Random <= 0 {
		return fmt.Errorf("sensitivity: CheckRandom needs Random > 0 and no Data")
	}
	r, err := newRunner(m, nil, nil, opts)
	if err != nil {
		return err
	}
	r.close()
	return nil
}
