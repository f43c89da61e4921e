//go:build tools

// This file pins modules that lprconv uses only in build steps or behind
// build tags, so that `go mod tidy` keeps them in go.mod.
package tools

import (
	_ "github.com/mmcloughlin/avo/build"
	_ "gonum.org/v1/gonum/mat"
	_ "gonum.org/v1/plot"
	_ "google.golang.org/protobuf/cmd/protoc-gen-go"
)
