package onnxio

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Names is a set of names in use in a graph, from which rewrites take new
// names that never collide with an existing node, value or initializer.
type Names map[string]bool

// GraphNames returns every name g uses: its initializers, graph inputs,
// outputs and value_info entries, and its nodes' names, inputs and
// outputs.
func GraphNames(g *onnxpb.GraphProto) Names {
	s := Names{}
	for _, t := range g.GetInitializer() {
		s[t.GetName()] = true
	}
	for _, list := range [][]*onnxpb.ValueInfoProto{g.GetInput(), g.GetOutput(), g.GetValueInfo()} {
		for _, v := range list {
			s[v.GetName()] = true
		}
	}
	for _, n := range g.GetNode() {
		s[n.GetName()] = true
		for _, o := range n.GetOutput() {
			s[o] = true
		}
		for _, in := range n.GetInput() {
			s[in] = true
		}
	}
	return s
}

// Fresh returns base when it is free, else the first free of base_1,
// base_2, …, and marks the name used.
func (s Names) Fresh(base string) string {
	name := base
	for i := 1; s[name]; i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	s[name] = true
	return name
}
