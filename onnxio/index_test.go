package onnxio

import (
	"testing"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// TestNewIndex checks producers, readers (each once, subgraph reads
// included), inputs, outputs and initializers.
func TestNewIndex(t *testing.T) {
	body := &onnxpb.GraphProto{
		Node:   []*onnxpb.NodeProto{{Name: "inner", Input: []string{"h"}, Output: []string{"z"}}},
		Output: []*onnxpb.ValueInfoProto{{Name: "z"}},
	}
	add := &onnxpb.NodeProto{Name: "add", Input: []string{"x", "x", "w"}, Output: []string{"h"}}
	cond := &onnxpb.NodeProto{Name: "if", Input: []string{"c"}, Output: []string{"y"},
		Attribute: []*onnxpb.AttributeProto{{Name: "then_branch", G: body}}}
	g := &onnxpb.GraphProto{
		Node:        []*onnxpb.NodeProto{add, cond},
		Initializer: []*onnxpb.TensorProto{{Name: "w"}},
		Input:       []*onnxpb.ValueInfoProto{{Name: "x"}, {Name: "c"}},
		Output:      []*onnxpb.ValueInfoProto{{Name: "y"}},
	}
	ix := NewIndex(g)
	if ix.Producer["h"] != add || ix.Producer["y"] != cond || ix.Producer["x"] != nil {
		t.Errorf("producers %v", ix.Producer)
	}
	for name, want := range map[string][]*onnxpb.NodeProto{"x": {add}, "w": {add}, "h": {cond}, "c": {cond}, "y": nil} {
		got := ix.Consumers[name]
		if len(got) != len(want) || (len(want) == 1 && got[0] != want[0]) {
			t.Errorf("readers of %q: %d nodes, want %d", name, len(got), len(want))
		}
	}
	if !ix.Inputs["x"] || !ix.Inputs["c"] || !ix.Outputs["y"] || ix.Inits["w"] == nil || ix.Inputs["w"] {
		t.Errorf("inputs %v outputs %v inits %v", ix.Inputs, ix.Outputs, ix.Inits)
	}
}
