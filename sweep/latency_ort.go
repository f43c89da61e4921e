//go:build ort

package sweep

import (
	"fmt"

	"github.com/lprconv/lprconv/sweep/ortlatency"
)

// NewLatencyMeter returns a meter that loads models into ONNX Runtime
// (all graph optimizations, opts.Threads intra-op threads) and runs them
// on a fixed pseudo-random input at batch size 1.
func NewLatencyMeter(opts LatencyOptions) (LatencyMeter, error) {
	m, err := ortlatency.New(opts.withDefaults().Threads)
	if err != nil {
		return nil, fmt.Errorf("latency unavailable: %w", err)
	}
	return ORTMeter(m), nil
}
