//go:build ort

package sweep

import (
	"fmt"

	"github.com/lprconv/lprconv/internal/ortrun"
)

// NewLatencyMeter returns a meter that runs models in ONNX Runtime (all
// graph optimizations, opts.Threads intra-op threads) on a fixed
// pseudo-random input at batch size 1.
func NewLatencyMeter(opts LatencyOptions) (LatencyMeter, error) {
	if err := ortrun.Init(); err != nil {
		return nil, fmt.Errorf("latency unavailable: %w", err)
	}
	return ortMeter{opts: opts.withDefaults()}, nil
}

// ortMeter measures latency in ONNX Runtime.
type ortMeter struct {
	opts LatencyOptions
}

// Measure loads the model, builds one input tensor per model input (symbolic
// dimensions set to 1) and returns the median time of opts.Runs runs.
func (m ortMeter) Measure(path string) (float64, error) {
	sess, err := ortrun.NewSession(path, ortrun.Options{IntraOpThreads: m.opts.Threads})
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	inputs := map[string]ortrun.Tensor{}
	for k, in := range sess.Inputs() {
		if in.DataType != "float" {
			return 0, fmt.Errorf("input %s of %s has type %s; latency is measured only for float inputs", in.Name, path, in.DataType)
		}
		shape := make([]int64, len(in.Shape))
		n := 1
		for i, d := range in.Shape {
			if d < 0 {
				d = 1
			}
			shape[i] = d
			n *= int(d)
		}
		inputs[in.Name] = ortrun.Tensor{Shape: shape, Data: latencyInput(n, uint32(k))}
	}
	var outputs []string
	for _, o := range sess.Outputs() {
		outputs = append(outputs, o.Name)
	}
	ms, err := medianLatency(func() error {
		_, err := sess.Run(inputs, outputs)
		return err
	}, m.opts.Warmup, m.opts.Runs)
	if err != nil {
		return 0, fmt.Errorf("run %s in ONNX Runtime: %w", path, err)
	}
	return ms, nil
}
