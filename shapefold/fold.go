package shapefold

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/shapeinfer"
)

// FoldSizes returns the sizes every dynamic input dimension takes in turn;
// a value that is the same at all of them is folded (see the package
// documentation for why these four).
func FoldSizes() []int64 { return []int64{2, 3, 67, 1031} }

// Report says what Fold changed.
type Report struct {
	// NodesBefore and NodesAfter count the main graph's nodes.
	NodesBefore int `json:"nodes_before"`
	NodesAfter  int `json:"nodes_after"`
	// Constants is the number of computed integer tensors replaced by
	// initializers, Reshapes the number of Reshape targets rewritten with
	// 0 and −1.
	Constants int `json:"constants"`
	Reshapes  int `json:"reshapes"`
	// Skipped, when not empty, says why the model was left unchanged.
	Skipped string `json:"skipped,omitempty"`
}

// Removed is the number of nodes Fold removed.
func (r Report) Removed() int { return r.NodesBefore - r.NodesAfter }

// Fold returns a copy of m with its batch-independent shape arithmetic
// replaced by initializers and its batch-dependent Reshape targets by
// constants (see the package documentation), and what it changed. m is not
// modified. A model that shape inference cannot follow is returned as a
// copy with Report.Skipped set, not as an error: folding is an
// optimization.
func Fold(m *onnxpb.ModelProto) (*onnxpb.ModelProto, Report, error) {
	out := proto.Clone(m).(*onnxpb.ModelProto)
	g := out.GetGraph()
	if g == nil {
		return nil, Report{}, fmt.Errorf("shapefold: model has no graph")
	}
	rep := Report{NodesBefore: len(g.GetNode())}
	skip := func(why string) (*onnxpb.ModelProto, Report, error) {
		rep.NodesAfter, rep.Skipped = rep.NodesBefore, why
		return proto.Clone(m).(*onnxpb.ModelProto), rep, nil
	}
	for _, n := range g.GetNode() {
		for _, a := range n.GetAttribute() {
			if a.GetG() != nil || len(a.GetGraphs()) > 0 {
				return skip(fmt.Sprintf("%s has a subgraph", onnxio.NodeLabel(n)))
			}
		}
	}
	samples, err := InferAt(out)
	if err != nil {
		return skip(err.Error())
	}
	initNames := map[string]bool{}
	for _, t := range g.GetInitializer() {
		initNames[t.GetName()] = true
	}

	// 1. Computed integer tensors with one value at every size.
	// A node's outputs are folded all together or not at all, so that a
	// node with a folded output is never needed afterwards.
	folded := map[string]bool{}
	var newInits []*onnxpb.TensorProto
	for _, n := range g.GetNode() {
		var ts []*onnxpb.TensorProto
		for _, name := range n.GetOutput() {
			if name == "" {
				continue
			}
			t, ok := constantAcross(samples, name)
			if !ok || initNames[name] {
				ts = nil
				break
			}
			ts = append(ts, t)
		}
		for _, t := range ts {
			folded[t.GetName()] = true
			newInits = append(newInits, t)
		}
	}

	// 2. Reshape targets that still depend on the sizes.
	var shapeInits []*onnxpb.TensorProto
	taken := onnxio.GraphNames(g)
	for _, n := range g.GetNode() {
		if n.GetOpType() != "Reshape" || !onnxio.IsDefaultDomain(n) || len(n.GetInput()) < 2 || len(n.GetOutput()) < 1 {
			continue
		}
		if onnxio.AttrInt(n, "allowzero", 0) != 0 || folded[n.GetInput()[1]] || initNames[n.GetInput()[1]] {
			continue
		}
		target, ok := reshapeTarget(samples, n.GetInput()[0], n.GetOutput()[0])
		if !ok {
			continue
		}
		name := taken.Fresh(n.GetOutput()[0] + "_folded_shape")
		shapeInits = append(shapeInits, onnxio.NewInt64(name, []int64{int64(len(target))}, target))
		n.Input[1] = name
		rep.Reshapes++
	}

	// Only the folded tensors something still reads become initializers.
	// The nodes that stay: those a graph output needs once the folded
	// tensors are initializers (the rewritten Reshapes read new names, but
	// no node is added or removed before removeDead).
	live := liveNodes(g, folded)
	used := usedNames(g, live)
	for _, t := range newInits {
		if used[t.GetName()] {
			g.Initializer = append(g.Initializer, t)
			rep.Constants++
		}
	}
	g.Initializer = append(g.Initializer, shapeInits...)
	removeDead(g, live)
	rep.NodesAfter = len(g.GetNode())
	return out, rep, nil
}

// InferAt runs shape inference once per FoldSizes size, with every dynamic
// dimension of every graph input at that size. When the inputs have more
// than one distinct dynamic dimension (dims sharing a name count as one),
// it adds two samples in which each distinct dimension has its own size
// (splitSizes), so that a value that only looks like a copy of one
// dimension because every dimension had the same size (a Reshape target
// [N, 2, c, H, W] read as "copy position 3" when H and W are both free) is
// not taken as one. Extra samples only make folding stricter.
func InferAt(m *onnxpb.ModelProto) ([]*shapeinfer.Shapes, error) {
	g := m.GetGraph()
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	// key names each dynamic dimension: its dim_param, or its position.
	type dyn struct {
		input string
		index int
		key   string
	}
	var dyns []dyn
	keys := map[string]int{}
	fixedDims := map[string][]int64{}
	for _, in := range g.GetInput() {
		if inits[in.GetName()] {
			continue
		}
		st := in.GetType().GetTensorType().GetShape()
		if st == nil {
			return nil, fmt.Errorf("input %q has no shape", in.GetName())
		}
		dims := make([]int64, len(st.GetDim()))
		for i, d := range st.GetDim() {
			if _, fixed := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); fixed && d.GetDimValue() > 0 {
				dims[i] = d.GetDimValue()
				continue
			}
			key := d.GetDimParam()
			if key == "" {
				key = fmt.Sprintf("%s[%d]", in.GetName(), i)
			}
			if _, ok := keys[key]; !ok {
				keys[key] = len(keys)
			}
			dyns = append(dyns, dyn{in.GetName(), i, key})
		}
		fixedDims[in.GetName()] = dims
	}
	// Each sample gives the k-th distinct dynamic dimension size(k).
	samples := []func(k int) int64{}
	for _, size := range FoldSizes() {
		samples = append(samples, func(int) int64 { return size })
	}
	if len(keys) > 1 {
		for _, split := range splitSizes(len(keys)) {
			samples = append(samples, func(k int) int64 { return split[k] })
		}
	}
	var out []*shapeinfer.Shapes
	for j, size := range samples {
		shapes := map[string][]int64{}
		for name, dims := range fixedDims {
			shapes[name] = slices.Clone(dims)
		}
		for _, d := range dyns {
			shapes[d.input][d.index] = size(keys[d.key])
		}
		s, err := shapeinfer.Infer(m, shapeinfer.Options{InputShapes: shapes})
		if err != nil {
			return nil, fmt.Errorf("shape inference at sample %d (%v): %w", j, shapes, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// splitSizes returns two assignments of distinct sizes to n distinct
// dynamic dimensions: the primes from 5 and the primes from 101, so that
// no two dimensions share a size and no size is a multiple of another.
func splitSizes(n int) [2][]int64 {
	var out [2][]int64
	for i, from := range []int64{5, 101} {
		for p := from; len(out[i]) < n; p++ {
			if prime(p) {
				out[i] = append(out[i], p)
			}
		}
	}
	return out
}

func prime(p int64) bool {
	for d := int64(2); d*d <= p; d++ {
		if p%d == 0 {
			return false
		}
	}
	return p > 1
}

// constantAcross returns name's value as an initializer when it is an
// integer tensor with the same shape and contents at every sample.
func constantAcross(samples []*shapeinfer.Shapes, name string) (*onnxpb.TensorProto, bool) {
	first := samples[0].Get(name)
	if !first.Known || first.Ints == nil || !foldableType(first.DType) {
		return nil, false
	}
	for _, s := range samples[1:] {
		v := s.Get(name)
		if !v.Known || v.DType != first.DType || !slices.Equal(v.Shape, first.Shape) || !slices.Equal(v.Ints, first.Ints) {
			return nil, false
		}
	}
	return intTensor(name, first), true
}

// foldableType reports whether integers of type dt are stored exactly.
func foldableType(dt onnxio.DataType) bool {
	return dt == onnxio.Int64 || dt == onnxio.Int32 || dt == onnxio.Bool
}

// intTensor writes an integer Value as a TensorProto of its type.
func intTensor(name string, v *shapeinfer.Value) *onnxpb.TensorProto {
	dims := append([]int64{}, v.Shape...)
	if v.DType == onnxio.Int64 {
		return onnxio.NewInt64(name, dims, append([]int64(nil), v.Ints...))
	}
	data := make([]int32, len(v.Ints))
	for i, x := range v.Ints {
		data[i] = int32(x)
	}
	return &onnxpb.TensorProto{Name: name, Dims: dims, DataType: int32(v.DType), Int32Data: data}
}

// reshapeTarget returns a constant target for a Reshape from in to out:
// each output dim is its value where it is the same at every sample, 0
// where it equals the input's dim at the same position at every sample,
// and −1 for at most one other dim. ok is false when no such target exists
// or the target is already constant.
func reshapeTarget(samples []*shapeinfer.Shapes, in, out string) ([]int64, bool) {
	first := samples[0].Get(out)
	if !first.Known {
		return nil, false
	}
	rank := len(first.Shape)
	ins := make([][]int64, len(samples))
	outs := make([][]int64, len(samples))
	for i, s := range samples {
		iv, ov := s.Get(in), s.Get(out)
		if !iv.Known || !ov.Known || len(ov.Shape) != rank {
			return nil, false
		}
		ins[i], outs[i] = iv.Shape, ov.Shape
	}
	target := make([]int64, rank)
	inferred := -1
	varies := false
	for d := 0; d < rank; d++ {
		same, copies := true, d < len(ins[0])
		for i := range samples {
			same = same && outs[i][d] == outs[0][d]
			copies = copies && d < len(ins[i]) && outs[i][d] == ins[i][d]
		}
		switch {
		case same && outs[0][d] > 0:
			target[d] = outs[0][d]
		case copies && !same:
			target[d] = 0
			varies = true
		case inferred < 0 && !same:
			target[d] = -1
			inferred = d
			varies = true
		default:
			return nil, false
		}
	}
	return target, varies
}

// usedNames returns the tensors read by the live nodes or by a graph
// output.
func usedNames(g *onnxpb.GraphProto, live []bool) map[string]bool {
	used := map[string]bool{}
	for i, n := range g.GetNode() {
		if !live[i] {
			continue
		}
		for _, name := range n.GetInput() {
			used[name] = true
		}
	}
	for _, o := range g.GetOutput() {
		used[o.GetName()] = true
	}
	return used
}

// liveNodes marks the nodes a graph output depends on, walking back from
// the outputs and stopping at folded tensors (they become initializers).
func liveNodes(g *onnxpb.GraphProto, folded map[string]bool) []bool {
	producer := map[string]int{}
	for i, n := range g.GetNode() {
		for _, name := range n.GetOutput() {
			if name != "" {
				producer[name] = i
			}
		}
	}
	live := make([]bool, len(g.GetNode()))
	var stack []string
	for _, o := range g.GetOutput() {
		stack = append(stack, o.GetName())
	}
	seen := map[string]bool{}
	for len(stack) > 0 {
		name := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[name] || folded[name] {
			continue
		}
		seen[name] = true
		i, ok := producer[name]
		if !ok {
			continue
		}
		if !live[i] {
			live[i] = true
			stack = append(stack, g.GetNode()[i].GetInput()...)
		}
	}
	return live
}

// removeDead keeps only the live nodes (see liveNodes), and the
// initializers and value_info entries that something still reads or
// produces.
func removeDead(g *onnxpb.GraphProto, live []bool) {
	var nodes []*onnxpb.NodeProto
	for i, n := range g.GetNode() {
		if live[i] {
			nodes = append(nodes, n)
		}
	}
	g.Node = nodes
	read := map[string]bool{}
	for _, n := range nodes {
		for _, name := range n.GetInput() {
			read[name] = true
		}
	}
	for _, o := range g.GetOutput() {
		read[o.GetName()] = true
	}
	inputs := map[string]bool{}
	for _, in := range g.GetInput() {
		inputs[in.GetName()] = true
	}
	var inits []*onnxpb.TensorProto
	for _, t := range g.GetInitializer() {
		if read[t.GetName()] || inputs[t.GetName()] {
			inits = append(inits, t)
		}
	}
	g.Initializer = inits
	present := map[string]bool{}
	for _, n := range nodes {
		for _, name := range n.GetOutput() {
			present[name] = true
		}
	}
	var infos []*onnxpb.ValueInfoProto
	for _, vi := range g.GetValueInfo() {
		if present[vi.GetName()] {
			infos = append(infos, vi)
		}
	}
	g.ValueInfo = infos
}
