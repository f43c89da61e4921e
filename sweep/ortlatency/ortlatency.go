// Package ortlatency loads ONNX models into ONNX Runtime (package ortapi,
// loaded at run time, so every build can time models) for timing: one
// inference at batch size 1 on a fixed input.
package ortlatency

import (
	"fmt"

	"github.com/lprconv/lprconv/ortapi"
)

// Meter loads models into ONNX Runtime with every graph optimization and
// Threads intra-op threads.
type Meter struct {
	rt      *ortapi.Runtime
	Threads int
}

// New loads the ONNX Runtime library at lib (a command's --ort-lib; ""
// looks it up as ortapi.Find does) and returns a Meter; threads <= 0
// means 1. Close releases the runtime.
func New(lib string, threads int) (*Meter, error) {
	rt, err := ortapi.Open(lib)
	if err != nil {
		return nil, err
	}
	return &Meter{rt: rt, Threads: max(1, threads)}, nil
}

// Version returns the loaded runtime's version.
func (m *Meter) Version() string { return m.rt.Version() }

// Close releases the runtime's environment; the runners must be closed
// first.
func (m *Meter) Close() error { return m.rt.Close() }

// Runner is one model loaded into ONNX Runtime with its input bound.
type Runner struct {
	sess  *ortapi.Session
	bound *ortapi.Bound
}

// Open loads the model at path and binds one input tensor per model
// input, with symbolic dimensions set to 1 and deterministic values.
func (m *Meter) Open(path string) (*Runner, error) {
	sess, err := m.rt.NewSessionFromFile(path, ortapi.Options{IntraOpThreads: m.Threads})
	if err != nil {
		return nil, err
	}
	inputs := map[string]ortapi.Tensor{}
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
		inputs[in.Name] = ortapi.Tensor{Shape: shape, Data: Input(n, uint32(k))}
	}
	b, err := sess.Bind(inputs)
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Runner{sess: sess, bound: b}, nil
}

// Run performs one inference (its outputs are discarded).
func (r *Runner) Run() error { return r.bound.Run() }

// Close releases the bound inputs and the session.
func (r *Runner) Close() error {
	r.bound.Close()
	return r.sess.Close()
}

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
