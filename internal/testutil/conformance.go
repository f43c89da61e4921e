package testutil

import (
	"fmt"
	"os"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// ConformanceRoot holds ONNX's per-operator test cases (Debian package
// libonnx-testdata): per case a model.onnx and test_data_set_* folders of
// input_K.pb and output_K.pb tensors.
const ConformanceRoot = "/usr/share/libonnx-testdata/data"

// ReadTensorProto reads one serialized TensorProto (an input_K.pb or
// output_K.pb file of a conformance case).
func ReadTensorProto(path string) (*onnxpb.TensorProto, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t := &onnxpb.TensorProto{}
	if err := proto.Unmarshal(data, t); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}
