//go:build !ort

package sweep

// NewLatencyMeter reports that latency cannot be measured: this binary was
// built without the ort tag, so ONNX Runtime is not linked in.
func NewLatencyMeter(LatencyOptions) (LatencyMeter, error) {
	return nil, ErrLatencyUnavailable
}
