//go:build ort

package torchexport

import (
	"fmt"

	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// ORTAvailable reports whether this binary links ONNX Runtime (built with
// the ort tag).
const ORTAvailable = true

// RunORT runs the model file at path (whose graph is m) in ONNX Runtime on
// x of the given input shape and returns its first output.
func RunORT(path string, m *onnxpb.ModelProto, x []float32, shape []int) ([]float32, error) {
	in, err := evaluate.ModelInput(m)
	if err != nil {
		return nil, err
	}
	dims := make([]int64, len(shape))
	for i, d := range shape {
		dims[i] = int64(d)
	}
	out, err := ortrun.Run(path, map[string]ortrun.Tensor{in.Name: {Shape: dims, Data: x}}, []string{in.Output})
	if err != nil {
		return nil, fmt.Errorf("onnx runtime: %w", err)
	}
	return out[in.Output].Data, nil
}
