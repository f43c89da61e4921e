// Package onnxio reads and writes ONNX model files.
//
// It owns the ONNX protobuf types (package onnxpb, generated from the
// project's own schema), loading with limits suitable for untrusted files,
// external tensor data, atomic saving, and conversion between tensors and Go
// slices. It knows nothing about LPR or any particular model.
package onnxio
