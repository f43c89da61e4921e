package torchexport

import (
	"fmt"

	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/ortapi"
)

// RunORT runs the model file at path (whose graph is m) in the ONNX
// Runtime rt on x of the given input shape and returns its first output.
func RunORT(rt *ortapi.Runtime, path string, m *onnxpb.ModelProto, x []float32, shape []int) ([]float32, error) {
	in, err := evaluate.ModelInput(m)
	if err != nil {
		return nil, err
	}
	dims := make([]int64, len(shape))
	for i, d := range shape {
		dims[i] = int64(d)
	}
	s, err := rt.NewSessionFromFile(path, ortapi.Options{})
	if err != nil {
		return nil, fmt.Errorf("onnx runtime: %w", err)
	}
	defer s.Close()
	out, err := s.Run(map[string]ortapi.Tensor{in.Name: {Shape: dims, Data: x}}, []string{in.Output})
	if err != nil {
		return nil, fmt.Errorf("onnx runtime: %w", err)
	}
	return out[in.Output].Data, nil
}
