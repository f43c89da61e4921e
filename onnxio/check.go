package onnxio

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Check verifies the structure of a model before anything uses it:
//
//   - every stored tensor (initializers, sparse initializers, Constant and
//     other attribute tensors, in subgraphs, training graphs and functions
//     too) has valid dims, a known data type, and data of exactly the length
//     its dims need (lengths only; values are not decoded);
//   - the main graph's inputs and outputs have names, no initializer name
//     repeats, and no value is produced twice (by two nodes, or by a node and
//     an input or initializer);
//   - every node input of the main graph is defined by an earlier node, a
//     graph input or an initializer (this catches undefined values, nodes out
//     of topological order and cycles), and every graph output is produced.
//
// Errors name the tensor, node or value at fault.
func Check(m *onnxpb.ModelProto) error {
	g := m.GetGraph()
	if g == nil {
		return fmt.Errorf("model has no graph")
	}
	for _, lt := range allTensors(m) {
		if err := checkTensorData(lt.t); err != nil {
			return fmt.Errorf("%s: %w", lt.where, err)
		}
	}

	// Where each value comes from: "" is the absent optional value.
	source := map[string]string{}
	for i, v := range g.Input {
		if v.GetName() == "" {
			return fmt.Errorf("graph input %d has no name", i)
		}
		if prev, ok := source[v.GetName()]; ok {
			return fmt.Errorf("graph input %d: name %q is already used by %s", i, v.GetName(), prev)
		}
		source[v.GetName()] = fmt.Sprintf("graph input %d", i)
	}
	seenInit := map[string]bool{}
	for i, t := range g.Initializer {
		name := t.GetName()
		if name == "" {
			return fmt.Errorf("initializer %d has no name", i)
		}
		if seenInit[name] {
			return fmt.Errorf("initializer %q appears twice", name)
		}
		seenInit[name] = true
		// An initializer may share its name with a graph input (it then
		// gives the input's default value).
		if _, ok := source[name]; !ok {
			source[name] = fmt.Sprintf("initializer %q", name)
		}
	}
	for i, t := range g.SparseInitializer {
		name := t.GetValues().GetName()
		if name == "" {
			return fmt.Errorf("sparse initializer %d has no name", i)
		}
		if prev, ok := source[name]; ok && !isInput(g, name) {
			return fmt.Errorf("sparse initializer %q: name is already used by %s", name, prev)
		}
		source[name] = fmt.Sprintf("sparse initializer %q", name)
	}
	producer := map[string]int{}
	for i, n := range g.Node {
		for _, out := range n.Output {
			if out == "" {
				continue
			}
			if j, ok := producer[out]; ok {
				return fmt.Errorf("%s: output %q is already produced by %s (a value may be defined only once)", nodeLabel(i, n), out, nodeLabel(j, g.Node[j]))
			}
			if prev, ok := source[out]; ok {
				return fmt.Errorf("%s: output %q is already defined by %s (a value may be defined only once)", nodeLabel(i, n), out, prev)
			}
			producer[out] = i
		}
	}
	defined := map[string]bool{"": true}
	for name := range source {
		defined[name] = true
	}
	for i, n := range g.Node {
		for _, in := range n.Input {
			if defined[in] {
				continue
			}
			if j, ok := producer[in]; ok {
				if j == i {
					return fmt.Errorf("%s: input %q is its own output (cycle)", nodeLabel(i, n), in)
				}
				if cyc := findCycle(g.Node, producer); cyc != nil {
					labels := make([]string, len(cyc))
					for k, c := range cyc {
						labels[k] = nodeLabel(c, g.Node[c])
					}
					return fmt.Errorf("%s: input %q is produced only later, by %s; the graph has a cycle: %s", nodeLabel(i, n), in, nodeLabel(j, g.Node[j]), strings.Join(labels, " -> "))
				}
				return fmt.Errorf("%s: input %q is produced only later, by %s (nodes are not in topological order)", nodeLabel(i, n), in, nodeLabel(j, g.Node[j]))
			}
			return fmt.Errorf("%s: input %q is not defined by any node, graph input or initializer (undefined value)", nodeLabel(i, n), in)
		}
		for _, out := range n.Output {
			defined[out] = true
		}
	}
	for i, v := range g.Output {
		if v.GetName() == "" {
			return fmt.Errorf("graph output %d has no name", i)
		}
		if !defined[v.GetName()] {
			return fmt.Errorf("graph output %q is not produced by any node, graph input or initializer", v.GetName())
		}
	}
	return nil
}

// findCycle returns the indices of nodes that form a cycle through their
// data dependencies (each consumes an output of the next, the last one of
// the first), or nil when the nodes form a DAG.
func findCycle(nodes []*onnxpb.NodeProto, producer map[string]int) []int {
	const (
		unvisited = iota
		onStack
		done
	)
	state := make([]int, len(nodes))
	var stack []int
	var found []int
	// Iterative depth-first search over "node i needs node j" edges, so
	// that a long chain cannot exhaust the goroutine stack.
	type frame struct{ node, next int }
	for start := range nodes {
		if state[start] != unvisited || found != nil {
			continue
		}
		frames := []frame{{start, 0}}
		state[start] = onStack
		stack = append(stack[:0], start)
		for len(frames) > 0 && found == nil {
			f := &frames[len(frames)-1]
			ins := nodes[f.node].Input
			if f.next == len(ins) {
				state[f.node] = done
				frames = frames[:len(frames)-1]
				stack = stack[:len(stack)-1]
				continue
			}
			in := ins[f.next]
			f.next++
			j, ok := producer[in]
			if !ok {
				continue
			}
			switch state[j] {
			case onStack:
				for k, s := range stack {
					if s == j {
						found = append([]int(nil), stack[k:]...)
						break
					}
				}
			case unvisited:
				state[j] = onStack
				frames = append(frames, frame{j, 0})
				stack = append(stack, j)
			}
		}
	}
	return found
}

func isInput(g *onnxpb.GraphProto, name string) bool {
	for _, v := range g.Input {
		if v.GetName() == name {
			return true
		}
	}
	return false
}

func nodeLabel(i int, n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return fmt.Sprintf("node %d (%s %q)", i, opLabel(n.GetOpType()), n.GetName())
	}
	return fmt.Sprintf("node %d (%s)", i, opLabel(n.GetOpType()))
}

// opLabel returns an operator type as written when it is a plain
// identifier, and quoted (so that control characters cannot break an error
// message) otherwise.
func opLabel(op string) string {
	if op == "" {
		return `""`
	}
	for _, r := range op {
		if !(r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return strconv.Quote(op)
		}
	}
	return op
}

// locatedTensor is a stored tensor with a description of where it sits in
// the model, for error messages.
type locatedTensor struct {
	t     *onnxpb.TensorProto
	where string
}

// allTensors returns every TensorProto stored in the model: initializers,
// sparse initializers' values and indices, tensors in node attributes
// (Constant values and others), recursively through subgraphs, training
// graphs and model-local functions.
func allTensors(m *onnxpb.ModelProto) []locatedTensor {
	var out []locatedTensor
	var walkGraph func(g *onnxpb.GraphProto, prefix string)
	add := func(t *onnxpb.TensorProto, where string) {
		if t != nil {
			out = append(out, locatedTensor{t, where})
		}
	}
	addSparse := func(s *onnxpb.SparseTensorProto, where string) {
		if s != nil {
			add(s.Values, where+" values")
			add(s.Indices, where+" indices")
		}
	}
	walkNodes := func(nodes []*onnxpb.NodeProto, prefix string) {
		for i, n := range nodes {
			for _, a := range n.Attribute {
				where := fmt.Sprintf("%s%s attribute %q", prefix, nodeLabel(i, n), a.GetName())
				if a.T != nil {
					add(a.T, where+tensorSuffix(a.T))
				}
				for j, t := range a.Tensors {
					add(t, fmt.Sprintf("%s[%d]%s", where, j, tensorSuffix(t)))
				}
				addSparse(a.SparseTensor, where)
				for j, s := range a.SparseTensors {
					addSparse(s, fmt.Sprintf("%s[%d]", where, j))
				}
				if a.G != nil {
					walkGraph(a.G, where+": ")
				}
				for j, sg := range a.Graphs {
					walkGraph(sg, fmt.Sprintf("%s[%d]: ", where, j))
				}
			}
		}
	}
	walkGraph = func(g *onnxpb.GraphProto, prefix string) {
		for _, t := range g.Initializer {
			add(t, prefix+"initializer "+quoteName(t.GetName()))
		}
		for i, s := range g.SparseInitializer {
			addSparse(s, fmt.Sprintf("%ssparse initializer %d", prefix, i))
		}
		walkNodes(g.Node, prefix)
	}
	if m.GetGraph() != nil {
		walkGraph(m.Graph, "")
	}
	for i, ti := range m.TrainingInfo {
		if ti.Initialization != nil {
			walkGraph(ti.Initialization, fmt.Sprintf("training_info %d initialization: ", i))
		}
		if ti.Algorithm != nil {
			walkGraph(ti.Algorithm, fmt.Sprintf("training_info %d algorithm: ", i))
		}
	}
	for _, f := range m.Functions {
		walkNodes(f.Node, fmt.Sprintf("function %q: ", f.GetName()))
	}
	return out
}

func quoteName(s string) string {
	if s == "" {
		return "(unnamed)"
	}
	return fmt.Sprintf("%q", s)
}

func tensorSuffix(t *onnxpb.TensorProto) string {
	if t.GetName() == "" {
		return ""
	}
	return fmt.Sprintf(" (tensor %q)", t.GetName())
}
