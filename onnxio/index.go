package onnxio

import (
	"slices"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Index answers the structural questions graph rewrites ask about one
// graph: which node produces a value, which nodes read it, which names are
// graph inputs and outputs, and which are initializers. A node with
// subgraphs counts as a reader of every name they use (SubgraphReads), so
// that a rewrite asking "is this read only here?" never misses a read from
// inside an If, Loop or Scan body. The maps are plain data: a rewrite that
// changes the graph may update them or build a new Index.
type Index struct {
	Producer  map[string]*onnxpb.NodeProto
	Consumers map[string][]*onnxpb.NodeProto // each reader once, in node order
	Inputs    map[string]bool
	Outputs   map[string]bool
	Inits     map[string]*onnxpb.TensorProto
}

// NewIndex indexes g.
func NewIndex(g *onnxpb.GraphProto) *Index {
	ix := &Index{Producer: map[string]*onnxpb.NodeProto{}, Consumers: map[string][]*onnxpb.NodeProto{},
		Inputs: map[string]bool{}, Outputs: map[string]bool{}, Inits: map[string]*onnxpb.TensorProto{}}
	for _, t := range g.GetInitializer() {
		ix.Inits[t.GetName()] = t
	}
	for _, v := range g.GetInput() {
		ix.Inputs[v.GetName()] = true
	}
	for _, v := range g.GetOutput() {
		ix.Outputs[v.GetName()] = true
	}
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			ix.Producer[o] = n
		}
		for _, in := range slices.Concat(n.GetInput(), SubgraphReads(n, nil)) {
			if in != "" && !slices.Contains(ix.Consumers[in], n) {
				ix.Consumers[in] = append(ix.Consumers[in], n)
			}
		}
	}
	return ix
}

// SubgraphReads appends to names every value that the subgraphs of node n
// (If branches, Loop and Scan bodies, at any depth) read or return. A
// subgraph may read an outer value without n listing it as an input.
// Names the subgraph defines itself are included too, which only makes a
// reader count more cautious.
func SubgraphReads(n *onnxpb.NodeProto, names []string) []string {
	for _, a := range n.GetAttribute() {
		for _, sg := range append([]*onnxpb.GraphProto{a.GetG()}, a.GetGraphs()...) {
			if sg == nil {
				continue
			}
			for _, o := range sg.GetOutput() {
				names = append(names, o.GetName())
			}
			for _, sn := range sg.GetNode() {
				names = append(names, sn.GetInput()...)
				names = SubgraphReads(sn, names)
			}
		}
	}
	return names
}
