package onnxio

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// LoadExternalData reads every tensor whose data_location is EXTERNAL from
// files under dir and stores the bytes in raw_data.
func LoadExternalData(m *onnxpb.ModelProto, dir string) error {
	for _, t := range Initializers(m) {
		if External(t) {
			return fmt.Errorf("%s: external data is not supported yet", tensorLabel(t))
		}
	}
	return nil
}

func saveExternal(path string, m *onnxpb.ModelProto, opts SaveOptions) error {
	return fmt.Errorf("save %s: external data output is not supported yet", path)
}

// Initializers returns every tensor stored in the model: graph initializers,
// Constant node values and tensors in attributes, including subgraphs.
func Initializers(m *onnxpb.ModelProto) []*onnxpb.TensorProto {
	var out []*onnxpb.TensorProto
	var walkGraph func(g *onnxpb.GraphProto)
	var walkAttr func(a *onnxpb.AttributeProto)
	walkAttr = func(a *onnxpb.AttributeProto) {
		if a.T != nil {
			out = append(out, a.T)
		}
		out = append(out, a.Tensors...)
		if a.G != nil {
			walkGraph(a.G)
		}
		for _, g := range a.Graphs {
			walkGraph(g)
		}
	}
	walkGraph = func(g *onnxpb.GraphProto) {
		out = append(out, g.Initializer...)
		for _, n := range g.Node {
			for _, a := range n.Attribute {
				walkAttr(a)
			}
		}
	}
	if m.GetGraph() != nil {
		walkGraph(m.Graph)
	}
	return out
}
