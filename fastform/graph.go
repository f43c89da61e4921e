package fastform

import (
	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// graphIndex answers the questions the rewrites ask about one graph: who
// produces and who consumes a value, which values are graph outputs, and
// which tensors are initializers.
type graphIndex struct {
	*onnxio.Index
	g *onnxpb.GraphProto
	// names holds every value and node name (value_info included, so
	// that a fresh value never inherits a recorded shape).
	names onnxio.Names
}

func newGraphIndex(g *onnxpb.GraphProto) *graphIndex {
	return &graphIndex{Index: onnxio.NewIndex(g), g: g, names: onnxio.GraphNames(g)}
}

// only reports whether value v is read by exactly the nodes want (in any
// order, each once) and is not a graph output.
func (ix *graphIndex) only(v string, want ...*onnxpb.NodeProto) bool {
	if ix.Outputs[v] {
		return false
	}
	cs := ix.Consumers[v]
	if len(cs) != len(want) {
		return false
	}
	for _, w := range want {
		found := false
		for _, c := range cs {
			if c == w {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// fresh returns a name not used in the graph, based on base.
func (ix *graphIndex) fresh(base string) string { return ix.names.Fresh(base) }

// floats returns the float32 contents of initializer name, or false when
// it is not a float initializer stored in the model or is also a graph
// input (whose value a caller may replace at run time).
func (ix *graphIndex) floats(name string) ([]float32, []int64, bool) {
	t := ix.Inits[name]
	if t == nil || ix.Inputs[name] || t.GetDataType() != int32(onnxio.Float) || onnxio.External(t) {
		return nil, nil, false
	}
	v, err := onnxio.Float32s(t)
	if err != nil {
		return nil, nil, false
	}
	return v, t.GetDims(), true
}

// usedElsewhere reports whether initializer name is read other than as
// input i of node n: by another node, as another input of n (a
// BatchNormalization may read one tensor as scale and variance), or as a
// graph output.
func (ix *graphIndex) usedElsewhere(name string, n *onnxpb.NodeProto, i int) bool {
	for _, c := range ix.Consumers[name] {
		if c != n {
			return true
		}
	}
	for j, in := range n.GetInput() {
		if j != i && in == name {
			return true
		}
	}
	return ix.Outputs[name]
}

// setFloats makes input i of node n an initializer holding v with the old
// one's dims (see setTensor).
func (ix *graphIndex) setFloats(n *onnxpb.NodeProto, i int, v []float32) {
	ix.setTensor(n, i, ix.Inits[n.GetInput()[i]].GetDims(), v)
}

// setTensor makes input i of node n an initializer holding v with dims:
// in place when nothing else reads the old one (usedElsewhere), else as a
// new initializer.
func (ix *graphIndex) setTensor(n *onnxpb.NodeProto, i int, dims []int64, v []float32) {
	old := n.GetInput()[i]
	t := ix.Inits[old]
	if ix.usedElsewhere(old, n, i) {
		name := ix.fresh(old + "_rewritten")
		nt := onnxio.NewFloat32(name, dims, v)
		ix.g.Initializer = append(ix.g.Initializer, nt)
		ix.Inits[name] = nt
		n.Input[i] = name
		ix.Consumers[name] = []*onnxpb.NodeProto{n}
		return
	}
	nt := onnxio.NewFloat32(old, dims, v)
	proto.Reset(t)
	proto.Merge(t, nt)
}
