package convert

import (
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/shapeinfer"
)

// Value is what static shape inference knows about one tensor (see
// shapeinfer.Value).
type Value = shapeinfer.Value

// ShapeOptions controls InferShapes (see shapeinfer.Options).
type ShapeOptions = shapeinfer.Options

// Shapes is the result of static shape inference (see shapeinfer.Shapes).
type Shapes = shapeinfer.Shapes

// InferShapes computes the shape of every tensor in the main graph of m
// without running it, with package shapeinfer, the one static shape and
// constant inference that the engine shares.
func InferShapes(m *onnxpb.ModelProto, opts ShapeOptions) (*Shapes, error) {
	return shapeinfer.Infer(m, opts)
}
