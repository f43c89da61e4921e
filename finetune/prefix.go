package finetune

import (
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/shapeinfer"
)

// sharedPrefix is the frozen front of a student that computes exactly what
// the teacher computes: the student's nodes that read only the graph
// input, frozen initializers and each other, each equal to the teacher's
// node of the same outputs (op, name, inputs, outputs, attributes) and
// reading initializers equal to the teacher's by value. The teacher
// computes these values anyway, so Distill runs only the rest of the
// student (suffix) on the teacher's values of the boundary: the prefix
// values the suffix reads.
//
// With the default LPR-only training of a student made by convert.Apply,
// the prefix is every node before the first LPR module; on the fixtures
// it holds the high-resolution early layers, the most expensive part of
// a forward pass at 32x32.
//
// The engine is deterministic and computes a value from the same inputs
// and weights the same way in the teacher's program as in the student's
// (batch slices hold whole images, and fusions such as a Relu run in a
// Conv's epilogue are exact), so the suffix sees the bits the whole
// student would compute, and training gives the same student bit for bit
// (TestSharedPrefixIsBitIdentical). One caveat: the engine chooses the
// number of batch-parallel workers of the suffix by its own cost model; if
// that differs from the whole student's choice at some thread count,
// per-worker gradients are summed in another grouping, and the run differs
// from the whole student's by float32 reassociation only (as a run at
// another thread count does).
type sharedPrefix struct {
	// suffix is the student without the prefix nodes: its graph inputs
	// are the boundary values, with their full-batch shapes.
	suffix *onnxpb.ModelProto
	// boundary lists the prefix values the suffix reads, in the order the
	// prefix computes them (the student's graph input first when the
	// suffix reads it directly).
	boundary []string
	// shapes are the boundary's full-batch shapes (engine InputShapes of
	// suffix).
	shapes map[string][]int
	// nodes is the number of student nodes the suffix leaves out.
	nodes int
}

// randomOps are the ONNX operators whose outputs are not a function of
// their inputs: a node of these is never shared.
var randomOps = map[string]bool{
	"Dropout": true, "RandomNormal": true, "RandomNormalLike": true, "RandomUniform": true,
	"RandomUniformLike": true, "Multinomial": true, "Bernoulli": true,
}

// findSharedPrefix returns the shared prefix of student and teacher for a
// batch of the given shape fed to the graph input input (the same name in
// both models), with trainable the student's trained initializers and
// need the student values the caller reads after a forward pass (graph
// outputs are added). It returns nil and the reason when there is nothing
// to share or sharing is not provably exact: different input names, no
// shared node, a trained initializer or a needed value inside the
// prefix, or a boundary value that is not a float tensor cut along the
// batch.
func findSharedPrefix(teacher, student *onnxpb.ModelProto, input string, shape []int, trainable, need []string) (*sharedPrefix, string) {
	tg, sg := teacher.GetGraph(), student.GetGraph()
	if !hasInput(tg, input) || !hasInput(sg, input) {
		return nil, fmt.Sprintf("the teacher's and the student's graph inputs differ from %q", input)
	}
	if onnxio.OpsetVersion(teacher) != onnxio.OpsetVersion(student) {
		return nil, "the teacher and the student import different opsets"
	}
	tInit := map[string]*onnxpb.TensorProto{}
	for _, t := range tg.GetInitializer() {
		tInit[t.GetName()] = t
	}
	sInit := map[string]*onnxpb.TensorProto{}
	for _, t := range sg.GetInitializer() {
		sInit[t.GetName()] = t
	}
	tProducer := map[string]*onnxpb.NodeProto{}
	for _, n := range tg.GetNode() {
		for _, o := range n.GetOutput() {
			if o != "" {
				tProducer[o] = n
			}
		}
	}
	trained := map[string]bool{}
	for _, n := range trainable {
		trained[n] = true
	}
	// shared: values the prefix computes (the graph input included);
	// sameInit: initializers checked equal in both models.
	shared := map[string]bool{input: true}
	konst := map[string]bool{}
	sameInit := map[string]bool{}
	equalInit := func(name string) bool {
		if ok, seen := sameInit[name]; seen {
			return ok
		}
		ok := !trained[name] && tensorsEqual(sInit[name], tInit[name])
		sameInit[name] = ok
		return ok
	}
	inPrefix := make([]bool, len(sg.GetNode()))
	nodes := 0
	for i, n := range sg.GetNode() {
		if !shareableNode(n, tProducer) {
			continue
		}
		ok, reads := true, false
		for _, in := range n.GetInput() {
			switch {
			case in == "" || konst[in]:
			case shared[in]:
				reads = true
			case sInit[in] != nil && equalInit(in):
			default:
				ok = false
			}
		}
		if !ok {
			continue
		}
		if !reads {
			// a node of equal constants only: prefix nodes may read it,
			// and it stays in the suffix too, where it folds
			for _, o := range n.GetOutput() {
				konst[o] = true
			}
			continue
		}
		inPrefix[i] = true
		nodes++
		for _, o := range n.GetOutput() {
			if o != "" {
				shared[o] = true
			}
		}
	}
	if nodes == 0 {
		return nil, "the student shares no node with the teacher"
	}
	for _, n := range need {
		if shared[n] {
			return nil, fmt.Sprintf("value %q, read after the forward pass, is computed by the shared prefix", n)
		}
	}
	for _, o := range sg.GetOutput() {
		if shared[o.GetName()] {
			return nil, fmt.Sprintf("graph output %q is computed by the shared prefix", o.GetName())
		}
	}

	// the suffix: every other node, the initializers it reads, and the
	// prefix values it reads as graph inputs
	var suffixNodes []*onnxpb.NodeProto
	reads := map[string]bool{}
	for i, n := range sg.GetNode() {
		if inPrefix[i] {
			continue
		}
		suffixNodes = append(suffixNodes, n)
		for _, in := range n.GetInput() {
			reads[in] = true
		}
	}
	for _, name := range trainable {
		if !reads[name] {
			return nil, fmt.Sprintf("trained tensor %q is read by the shared prefix only", name)
		}
	}
	var boundary []string
	if reads[input] {
		boundary = append(boundary, input)
	}
	for i, n := range sg.GetNode() {
		if !inPrefix[i] {
			continue
		}
		for _, o := range n.GetOutput() {
			if o != "" && reads[o] {
				boundary = append(boundary, o)
			}
		}
	}
	info, err := shapeinfer.Infer(student, shapeinfer.Options{InputShapes: map[string][]int64{input: toInt64(shape)}})
	if err != nil {
		return nil, fmt.Sprintf("shape inference: %v", err)
	}
	shapes := map[string][]int{}
	var inputs []*onnxpb.ValueInfoProto
	for _, name := range boundary {
		if name == input {
			for _, in := range sg.GetInput() {
				if in.GetName() == input {
					inputs = append(inputs, in)
				}
			}
			shapes[name] = shape
			continue
		}
		v := info.Get(name)
		if !v.Known || v.DType != onnxio.Float || len(v.Shape) == 0 || v.Shape[0] != int64(shape[0]) || v.Ints != nil || v.Floats != nil {
			return nil, fmt.Sprintf("boundary value %q is not a float tensor cut along the batch", name)
		}
		s := make([]int, len(v.Shape))
		dims := make([]*onnxpb.TensorShapeProto_Dimension, len(v.Shape))
		for k, d := range v.Shape {
			s[k] = int(d)
			dims[k] = &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}}
			if k == 0 { // the batch stays dynamic, so that the engine may cut it
				dims[k].Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}
			}
		}
		shapes[name] = s
		inputs = append(inputs, &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxio.Float), Shape: &onnxpb.TensorShapeProto{Dim: dims}}}}})
	}
	var inits []*onnxpb.TensorProto
	for _, t := range sg.GetInitializer() {
		if reads[t.GetName()] {
			inits = append(inits, t)
		}
	}
	suffix := &onnxpb.ModelProto{
		IrVersion:   student.GetIrVersion(),
		OpsetImport: student.GetOpsetImport(),
		Graph: &onnxpb.GraphProto{
			Name:        sg.GetName(),
			Node:        suffixNodes,
			Initializer: inits,
			Input:       inputs,
			Output:      sg.GetOutput(),
		},
	}
	return &sharedPrefix{suffix: suffix, boundary: boundary, shapes: shapes, nodes: nodes}, ""
}

// shareableNode reports whether a student node may be computed by the
// teacher: the teacher has a node equal to it field by field (so the same
// op, attributes, inputs and outputs), it is deterministic, and it runs
// in inference mode.
func shareableNode(n *onnxpb.NodeProto, tProducer map[string]*onnxpb.NodeProto) bool {
	if len(n.GetOutput()) == 0 || n.GetOutput()[0] == "" || randomOps[n.GetOpType()] {
		return false
	}
	tn := tProducer[n.GetOutput()[0]]
	if tn == nil || !proto.Equal(n, tn) {
		return false
	}
	for _, a := range n.GetAttribute() {
		if (a.GetName() == "training_mode" && a.GetI() != 0) || (a.GetName() == "is_test" && a.GetI() == 0) {
			return false
		}
		if a.GetG() != nil || len(a.GetGraphs()) > 0 {
			return false // subgraphs may read outer values not checked here
		}
	}
	return true
}

// tensorsEqual reports whether two initializers hold the same tensor as
// the engine reads it: same type, shape and values bit for bit (however
// each is encoded in the file).
func tensorsEqual(a, b *onnxpb.TensorProto) bool {
	if a == nil || b == nil || a.GetDataType() != b.GetDataType() {
		return false
	}
	ta, err := engine.TensorFromProto(a)
	if err != nil {
		return false
	}
	tb, err := engine.TensorFromProto(b)
	if err != nil {
		return false
	}
	if ta.DType != tb.DType || !slices.Equal(ta.Shape, tb.Shape) || !slices.Equal(ta.I, tb.I) || len(ta.F) != len(tb.F) {
		return false
	}
	for i, v := range ta.F {
		if math.Float32bits(v) != math.Float32bits(tb.F[i]) {
			return false
		}
	}
	return true
}

func hasInput(g *onnxpb.GraphProto, name string) bool {
	for _, in := range g.GetInput() {
		if in.GetName() == name {
			return true
		}
	}
	return false
}

func toInt64(s []int) []int64 {
	out := make([]int64, len(s))
	for i, v := range s {
		out[i] = int64(v)
	}
	return out
}

// compileStudent compiles the student for training on batches of the
// given shape: its suffix after the prefix it shares with the teacher
// (returned with it), or the whole student when nothing is shared, the
// sharing is off (opts.fullStudent) or the suffix does not compile.
func compileStudent(teacher, student *onnxpb.ModelProto, input string, shape []int, trainable, need []string, opts Options) (*engine.Batched, *sharedPrefix, error) {
	o := engine.Options{Threads: opts.Threads, InputShapes: map[string][]int{input: shape}, Trainable: trainable, KeepForBackward: true, Outputs: need}
	if !opts.fullStudent {
		if pre, _ := findSharedPrefix(teacher, student, input, shape, trainable, need); pre != nil {
			so := o
			so.InputShapes = pre.shapes
			if sp, err := engine.CompileBatched(pre.suffix, so, 0); err == nil {
				return sp, pre, nil
			}
		}
	}
	sp, err := engine.CompileBatched(student, o, 0)
	return sp, nil, err
}

// forwardStudent runs the student on batch after the teacher's forward
// pass on the same batch: the whole student, or its suffix on the
// teacher's values of the shared prefix's boundary.
func (r *trainer) forwardStudent(batch *engine.Tensor) error {
	if r.pre == nil {
		return r.sp.Forward(map[string]*engine.Tensor{r.in.Name: batch})
	}
	for _, name := range r.pre.boundary {
		if name == r.in.Name {
			r.feed[name] = batch
			continue
		}
		v := r.tp.Value(name)
		if v == nil {
			return fmt.Errorf("the teacher did not compute the shared value %q", name)
		}
		r.feed[name] = v
	}
	return r.sp.Forward(r.feed)
}
