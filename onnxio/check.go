package onnxio

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Check verifies the structure of the main graph: every tensor's dims are
// valid and agree with its data, every node input is defined before use,
// and the nodes are in topological order.
func Check(m *onnxpb.ModelProto) error {
	g := m.GetGraph()
	if g == nil {
		return fmt.Errorf("model has no graph")
	}
	for _, t := range Initializers(m) {
		if _, err := NumElements(t); err != nil {
			return fmt.Errorf("%s: %w", tensorLabel(t), err)
		}
	}
	defined := map[string]bool{"": true}
	for _, t := range g.Initializer {
		defined[t.GetName()] = true
	}
	for _, v := range g.Input {
		defined[v.GetName()] = true
	}
	for i, n := range g.Node {
		for _, in := range n.Input {
			if !defined[in] {
				return fmt.Errorf("node %d (%s %q): input %q is not defined by any earlier node, input or initializer (undefined value or cycle)", i, n.GetOpType(), n.GetName(), in)
			}
		}
		for _, out := range n.Output {
			defined[out] = true
		}
	}
	for _, v := range g.Output {
		if !defined[v.GetName()] {
			return fmt.Errorf("graph output %q is not produced by any node", v.GetName())
		}
	}
	return nil
}
