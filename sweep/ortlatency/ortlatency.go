// Package ortlatency loads ONNX models into ONNX Runtime for timing, one
// inference at batch size 1 on a fixed input. It uses cgo (through
// internal/ortrun); the lprconv binary imports it only when built with the
// ort tag, so that the default build stays pure Go.
package ortlatency

import (
	"fmt"

	"github.com/lprconv/lprconv/internal/ortrun"
)

// Meter loads models into ONNX Runtime with every graph optimization and
// Threads intra-op threads.
type Meter struct {
	Threads int
}

// New initializes ONNX Runtime (see ortrun.LibraryPath for where the
// library is found) and returns a Meter; threads <= 0 means 1.
func New(threads int) (*Meter, error) {
	if err := ortrun.Init(); err != nil {
		return nil, err
	}
	return &Meter{Threads: max(1, threads)}, nil
}

// Runner is one model loaded into ONNX Runtime with its input.
type Runner struct {
	sess    *ortrun.Session
	inputs  map[string]ortrun.Tensor
	outputs []string
}

// Open loads the model at path and builds one input tensor per model
// input, with symbolic dimensions set to 1 and deterministic values.
func (m *Meter) Open(path string) (*Runner, error) {
	sess, err := ortrun.NewSession(path, ortrun.Options{IntraOpThreads: m.Threads})
	if err != nil {
		return nil, err
	}
	r := &Runner{sess: sess, inputs: map[string]ortrun.Tensor{}}
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
		r.inputs[in.Name] = ortrun.Tensor{Shape: shape, Data: Input(n, uint32(k))}
	}
	for _, o := range sess.Outputs() {
		r.outputs = append(r.outputs, o.Name)
	}
	return r, nil
}

// Run performs one inference.
func (r *Runner) Run() error {
	_, err := r.sess.Run(r.inputs, r.outputs)
	return err
}

// Close releases the session.
func (r *Runner) Close() error { return r.sess.Close() }

// Input returns n deterministic values in [-1, 1) for a timing input (a
// linear congruential sequence seeded by stream).
func Input(n int, stream uint32) []float32 {
	out := make([]float32, n)
	x := 2463534242 + stream*2654435761
	for i := range out {
		x = x*1664525 + 1013904223
		out[i] = float32(x>>8)/float32(1<<23) - 1
	}
	return out
}
