// Package probe records what github.com/owulveryck/onnx-go v0.5.0, the Go
// library a program would use to run an ONNX model in-process (with its
// gorgonia backend, gorgonnx), can do with lprconv's float32 outputs. It is
// a module of its own so that lprconv does not depend on onnx-go; run its
// test with `cd internal/onnxgo-probe && go test ./...`.
package probe
