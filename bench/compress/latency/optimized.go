package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/onnxio"
)

// optimizedOps loads the model at path in ONNX Runtime (all graph
// optimizations, one thread), has it write the optimized graph to dst, and
// returns a summary of the node types in that graph ("domain:op count").
func optimizedOps(path, dst string) (string, error) {
	s, err := ortrun.NewSession(path, ortrun.Options{IntraOpThreads: 1, OptimizedModelPath: dst})
	if err != nil {
		return "", err
	}
	s.Close()
	m, err := onnxio.Load(dst)
	if err != nil {
		return "", fmt.Errorf("load optimized graph: %w", err)
	}
	counts := map[string]int{}
	for _, n := range m.Graph.Node {
		op := n.OpType
		if n.Domain != "" {
			op = strings.TrimPrefix(n.Domain, "com.microsoft.") + ":" + op
		}
		if op == "nchwc:Conv" {
			for _, a := range n.Attribute {
				if a.Name == "activation" {
					op += "+" + string(a.S)
				}
			}
			if len(n.Input) > 3 && n.Input[3] != "" {
				op += "+Sum"
			}
		}
		counts[op]++
	}
	var keys []string
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	return strings.Join(parts, ", "), nil
}
