package sweep

import (
	"fmt"

	"github.com/lprconv/lprconv/sweep/ortlatency"
)

// NewLatencyMeter returns a meter that loads models into ONNX Runtime
// (all graph optimizations, opts.Threads intra-op threads) and runs them
// on a fixed pseudo-random input at batch size 1. The library is lib (a
// command's --ort-lib), else found as ortapi.Find does; without one the
// error says "latency not measured" and why, in one line.
func NewLatencyMeter(lib string, opts LatencyOptions) (LatencyMeter, error) {
	m, err := ortlatency.New(lib, opts.withDefaults().Threads)
	if err != nil {
		return nil, fmt.Errorf("latency not measured: %w", err)
	}
	return ORTMeter(m), nil
}
