package convert

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// opsetVersion returns the version of the default ONNX operator set that
// the model imports, or 0 when it imports none.
func opsetVersion(m *onnxpb.ModelProto) int64 {
	for _, o := range m.GetOpsetImport() {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			return o.GetVersion()
		}
	}
	return 0
}

// isDefaultDomain reports whether the node belongs to the default ONNX
// operator set.
func isDefaultDomain(n *onnxpb.NodeProto) bool {
	return n.GetDomain() == "" || n.GetDomain() == "ai.onnx"
}

func nodeLabel(n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return fmt.Sprintf("%s node %q", n.GetOpType(), n.GetName())
	}
	if len(n.GetOutput()) > 0 {
		return fmt.Sprintf("%s node with output %q", n.GetOpType(), n.GetOutput()[0])
	}
	return n.GetOpType() + " node"
}

// attr returns the node's attribute called name, or nil.
func attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

func attrInt(n *onnxpb.NodeProto, name string, def int64) int64 {
	if a := attr(n, name); a != nil {
		return a.GetI()
	}
	return def
}

func attrFloat(n *onnxpb.NodeProto, name string, def float32) float32 {
	if a := attr(n, name); a != nil {
		return a.GetF()
	}
	return def
}

func attrInts(n *onnxpb.NodeProto, name string) ([]int64, bool) {
	if a := attr(n, name); a != nil {
		return a.GetInts(), true
	}
	return nil, false
}

func attrString(n *onnxpb.NodeProto, name, def string) string {
	if a := attr(n, name); a != nil {
		return string(a.GetS())
	}
	return def
}

// input returns the node's i-th input name, or "" when it is absent.
func input(n *onnxpb.NodeProto, i int) string {
	if i < len(n.GetInput()) {
		return n.GetInput()[i]
	}
	return ""
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

func isFloatType(dt int32) bool {
	switch onnxio.DataType(dt) {
	case onnxio.Float, onnxio.Double, onnxio.Float16, onnxpb.TensorProto_BFLOAT16:
		return true
	}
	return false
}
