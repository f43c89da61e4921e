#!/bin/sh
# Regenerates onnx.pb.go from onnx.proto with protoc and the protoc-gen-go
# version pinned in go.mod.
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
protoc --plugin=protoc-gen-go="$tmp/protoc-gen-go" --go_out=. --go_opt=paths=source_relative onnx.proto
