// Package onnxpb holds the Go types generated from lprconv's ONNX IR schema
// (onnx.proto in this folder). Regenerate with `go generate ./onnxio/...`;
// it needs protoc (Debian's protobuf-compiler).
package onnxpb

//go:generate sh gen.sh
