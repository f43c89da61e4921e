package convert

import (
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// The node helpers live in onnxio (shared with shapeinfer); these
// short names keep convert's call sites readable.

func opsetVersion(m *onnxpb.ModelProto) int64  { return onnxio.OpsetVersion(m) }
func isDefaultDomain(n *onnxpb.NodeProto) bool { return onnxio.IsDefaultDomain(n) }
func nodeLabel(n *onnxpb.NodeProto) string     { return onnxio.NodeLabel(n) }
func input(n *onnxpb.NodeProto, i int) string  { return onnxio.Input(n, i) }
func isFloatType(dt int32) bool                { return onnxio.IsFloat(dt) }
func attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	return onnxio.Attr(n, name)
}
func attrInt(n *onnxpb.NodeProto, name string, def int64) int64 {
	return onnxio.AttrInt(n, name, def)
}
func attrFloat(n *onnxpb.NodeProto, name string, def float32) float32 {
	return onnxio.AttrFloat(n, name, def)
}
func attrInts(n *onnxpb.NodeProto, name string) ([]int64, bool) {
	return onnxio.AttrInts(n, name)
}

// graphIndex holds the lookups that the analyses of one graph share.
type graphIndex struct {
	g         *onnxpb.GraphProto
	inits     map[string]*onnxpb.TensorProto
	producer  map[string]int   // value name -> index of the node producing it
	consumers map[string][]int // value name -> indices of nodes reading it
	outputs   map[string]bool  // graph outputs
	inputs    map[string]bool  // graph inputs
}

func newGraphIndex(g *onnxpb.GraphProto) *graphIndex {
	ix := &graphIndex{
		g:         g,
		inits:     map[string]*onnxpb.TensorProto{},
		producer:  map[string]int{},
		consumers: map[string][]int{},
		outputs:   map[string]bool{},
		inputs:    map[string]bool{},
	}
	for _, t := range g.GetInitializer() {
		ix.inits[t.GetName()] = t
	}
	for _, v := range g.GetInput() {
		ix.inputs[v.GetName()] = true
	}
	for _, v := range g.GetOutput() {
		ix.outputs[v.GetName()] = true
	}
	for i, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			if o != "" {
				ix.producer[o] = i
			}
		}
		for _, in := range n.GetInput() {
			if in != "" {
				ix.consumers[in] = append(ix.consumers[in], i)
			}
		}
	}
	return ix
}

// constTensor resolves name to a constant tensor: a graph initializer, the
// value of a Constant node, or either seen through Identity nodes. The
// second result is false for anything computed at run time.
func (ix *graphIndex) constTensor(name string) (*onnxpb.TensorProto, bool) {
	for hops := 0; hops < 64 && name != ""; hops++ {
		if t, ok := ix.inits[name]; ok {
			return t, true
		}
		pi, ok := ix.producer[name]
		if !ok {
			return nil, false
		}
		n := ix.g.GetNode()[pi]
		if !isDefaultDomain(n) {
			return nil, false
		}
		switch n.GetOpType() {
		case "Identity":
			name = input(n, 0)
		case "Constant":
			if a := attr(n, "value"); a != nil && a.GetT() != nil {
				return a.GetT(), true
			}
			return nil, false
		default:
			return nil, false
		}
	}
	return nil, false
}

// constFloats decodes the constant tensor called name.
func (ix *graphIndex) constFloats(name string) ([]float32, []int64, bool, error) {
	t, ok := ix.constTensor(name)
	if !ok {
		return nil, nil, false, nil
	}
	v, err := onnxio.Float32s(t)
	if err != nil {
		return nil, nil, true, err
	}
	return v, t.GetDims(), true, nil
}
