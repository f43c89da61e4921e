//go:build ort

package sweep

import (
	"fmt"

	"github.com/lprconv/lprconv/internal/ortrun"
)

// NewLatencyMeter returns a meter that loads models into ONNX Runtime
// (all graph optimizations, opts.Threads intra-op threads) and runs them
// on a fixed pseudo-random input at batch size 1.
func NewLatencyMeter(opts LatencyOptions) (LatencyMeter, error) {
	if err := ortrun.Init(); err != nil {
		return nil, fmt.Errorf("latency unavailable: %w", err)
	}
	return ortMeter{threads: opts.withDefaults().Threads}, nil
}

// ortMeter loads models into ONNX Runtime.
type ortMeter struct{ threads int }

// ortRunner is one model loaded into ONNX Runtime with its input.
type ortRunner struct {
	sess    *ortrun.Session
	inputs  map[string]ortrun.Tensor
	outputs []string
}

// Open loads the model and builds one input tensor per model input, with
// symbolic dimensions set to 1.
func (m ortMeter) Open(path string) (LatencyRunner, error) {
	sess, err := ortrun.NewSession(path, ortrun.Options{IntraOpThreads: m.threads})
	if err != nil {
		return nil, err
	}
	r := &ortRunner{sess: sess, inputs: map[string]ortrun.Tensor{}}
	for k, in := range sess.Inputs() {
		if in.DataType != "float" {
			sess.Close()
			return nil, fmt.Errorf("input %s of %s has type %s; latency is measured only for float inputs", in.Name, path, in.DataType)
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
		r.inputs[in.Name] = ortrun.Tensor{Shape: shape, Data: latencyInput(n, uint32(k))}
	}
	for _, o := range sess.Outputs() {
		r.outputs = append(r.outputs, o.Name)
	}
	return r, nil
}

// Run performs one inference.
func (r *ortRunner) Run() error {
	_, err := r.sess.Run(r.inputs, r.outputs)
	return err
}

// Close releases the session.
func (r *ortRunner) Close() error { return r.sess.Close() }
