//go:build !ort

package torchexport

import (
	"errors"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// ORTAvailable reports whether this binary links ONNX Runtime (built with
// the ort tag).
const ORTAvailable = false

// RunORT reports that ONNX Runtime is not linked into this binary: build
// with -tags ort to verify in it.
func RunORT(string, *onnxpb.ModelProto, []float32, []int) ([]float32, error) {
	return nil, errors.New("ONNX Runtime is not linked into this binary (build lprconv with -tags ort)")
}
