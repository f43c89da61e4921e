package chanperm

import (
	"slices"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// param is input In of node Node: a float initializer whose axis Axis is
// indexed by the channels of a group.
type param struct {
	node *onnxpb.NodeProto
	in   int
	axis int
}

// group is a set of C channels that may be relabeled freely: the output of
// a dense Conv (the producer, whose weight rows and bias are indexed by
// the channels), carried through per-channel operations (activations,
// BatchNormalization, depthwise Conv) into dense Convs (the sinks, whose
// weight columns are indexed by them). Any permutation applied to every
// param leaves what the graph computes unchanged, up to the summation
// order of the sinks.
type group struct {
	producer *onnxpb.NodeProto
	c        int
	params   []param
	sinks    []*onnxpb.NodeProto
}

// index is the structure of the graph being relabeled (onnxio.Index,
// which counts a node with subgraphs as a reader of every name they use,
// so that no value or initializer a subgraph sees is relabeled).
type index struct {
	*onnxio.Index
	g *onnxpb.GraphProto
}

func newIndex(g *onnxpb.GraphProto) *index { return &index{Index: onnxio.NewIndex(g), g: g} }

// floatInit returns the dims of initializer name when it is a float
// tensor stored in the model, read by node n alone, once, and not a graph
// input or output (whose value a caller may see or replace).
func (ix *index) floatInit(n *onnxpb.NodeProto, name string) ([]int64, bool) {
	t := ix.Inits[name]
	if name == "" || t == nil || ix.Inputs[name] || ix.Outputs[name] || t.GetDataType() != int32(onnxio.Float) || onnxio.External(t) {
		return nil, false
	}
	if cs := ix.Consumers[name]; len(cs) != 1 || cs[0] != n {
		return nil, false
	}
	uses := 0
	for _, in := range n.GetInput() {
		if in == name {
			uses++
		}
	}
	return t.GetDims(), uses == 1
}

// scalarInit reports whether name is absent or an initializer of at most
// one element (a Clip bound).
func (ix *index) scalarInit(name string) bool {
	if name == "" {
		return true
	}
	t := ix.Inits[name]
	if t == nil || ix.Inputs[name] {
		return false
	}
	n := int64(1)
	for _, d := range t.GetDims() {
		n *= d
	}
	return n <= 1
}

// denseConv reports whether n is a default-domain Conv with group 1 and a
// 4-D float weight initializer of its own, and returns its output and input
// channel counts.
func (ix *index) denseConv(n *onnxpb.NodeProto) (out, in int, ok bool) {
	if n.GetOpType() != "Conv" || !onnxio.IsDefaultDomain(n) || len(n.GetInput()) < 2 || len(n.GetOutput()) != 1 {
		return 0, 0, false
	}
	if onnxio.AttrInt(n, "group", 1) != 1 {
		return 0, 0, false
	}
	d, ok := ix.floatInit(n, n.GetInput()[1])
	if !ok || len(d) != 4 || d[0] < 1 || d[1] < 1 {
		return 0, 0, false
	}
	if b := onnxio.Input(n, 2); b != "" {
		if bd, ok := ix.floatInit(n, b); !ok || !slices.Equal(bd, []int64{d[0]}) {
			return 0, 0, false
		}
	}
	return int(d[0]), int(d[1]), true
}

// unary lists the element-wise operations without parameters that a group
// passes through.
var unary = map[string]bool{"Relu": true, "LeakyRelu": true, "Sigmoid": true, "Tanh": true, "HardSigmoid": true,
	"HardSwish": true, "Elu": true, "Selu": true, "Identity": true}

// findGroup returns the group produced by the dense Conv p, or false when
// its channels cannot be relabeled: a value on the way is a graph output,
// or is read by anything but the operations above, a depthwise Conv with
// one weight per channel, or a dense Conv as its data input.
func (ix *index) findGroup(p *onnxpb.NodeProto) (group, bool) {
	c, _, ok := ix.denseConv(p)
	if !ok {
		return group{}, false
	}
	g := group{producer: p, c: c, params: []param{{p, 1, 0}}}
	if onnxio.Input(p, 2) != "" {
		g.params = append(g.params, param{p, 2, 0})
	}
	C := int64(c)
	queue := []string{p.GetOutput()[0]}
	seen := map[*onnxpb.NodeProto]bool{p: true}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		if ix.Outputs[v] {
			return group{}, false
		}
		for _, n := range ix.Consumers[v] {
			if seen[n] {
				return group{}, false // read twice on the way: not a chain
			}
			seen[n] = true
			ins := n.GetInput()
			if !onnxio.IsDefaultDomain(n) || len(ins) == 0 || ins[0] != v || slices.Contains(ins[1:], v) {
				return group{}, false
			}
			op := n.GetOpType()
			switch {
			case unary[op] && len(ins) == 1 && len(n.GetOutput()) == 1:
			case op == "Clip" && len(ins) <= 3 && len(n.GetOutput()) == 1 && ix.scalarInit(onnxio.Input(n, 1)) && ix.scalarInit(onnxio.Input(n, 2)):
			case op == "BatchNormalization":
				if len(ins) != 5 || onnxio.AttrInt(n, "training_mode", 0) != 0 || len(n.GetOutput()) != 1 {
					return group{}, false
				}
				for i := 1; i <= 4; i++ {
					if d, ok := ix.floatInit(n, ins[i]); !ok || !slices.Equal(d, []int64{C}) {
						return group{}, false
					}
					g.params = append(g.params, param{n, i, 0})
				}
			case op == "Conv" && len(n.GetOutput()) == 1 && onnxio.AttrInt(n, "group", 1) == C && C > 1:
				d, ok := ix.floatInit(n, onnxio.Input(n, 1))
				if !ok || len(d) != 4 || d[0] != C || d[1] != 1 {
					return group{}, false
				}
				g.params = append(g.params, param{n, 1, 0})
				if b := onnxio.Input(n, 2); b != "" {
					if bd, ok := ix.floatInit(n, b); !ok || !slices.Equal(bd, []int64{C}) {
						return group{}, false
					}
					g.params = append(g.params, param{n, 2, 0})
				}
			default:
				if _, in, ok := ix.denseConv(n); ok && in == c {
					g.sinks = append(g.sinks, n)
					g.params = append(g.params, param{n, 1, 1})
					continue
				}
				return group{}, false
			}
			queue = append(queue, n.GetOutput()[0])
		}
	}
	return g, true
}
