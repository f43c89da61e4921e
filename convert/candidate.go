package convert

import (
	"fmt"

	"github.com/lprconv/lprconv/internal/checked"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Candidate is a square pointwise convolution that an LPR module can
// replace.
type Candidate struct {
	// Name identifies the layer: the Conv node's name, or its output name
	// when the node has none.
	Name string `json:"name"`
	// Node is the index of the Conv node in the graph.
	Node int `json:"-"`
	// Input is the Conv's input tensor x.
	Input string `json:"input"`
	// Output is the tensor the LPR module must produce: the Conv's output,
	// or the output of the BatchNormalization folded into it.
	Output string `json:"output"`
	// Channels is C_out, which equals C_in for square candidates.
	Channels int `json:"channels"`
	// InChannels is C_in of a non-square candidate (found only when asked
	// for, see CandidateOptions); 0 for square ones. Use InputChannels.
	InChannels int `json:"in_channels,omitempty"`
	// Weight and Bias name the Conv's weight and bias inputs (Bias is ""
	// when the Conv has none).
	Weight string `json:"weight"`
	Bias   string `json:"bias,omitempty"`
	// BatchNorm is the index of a BatchNormalization node that directly
	// follows the Conv and can be folded into it, or -1.
	BatchNorm int `json:"-"`
	// Pixels is the batch size times the output height and width under
	// the inspected input shape (0 when unknown); MACs of the 1x1 Conv are
	// C*C*Pixels.
	Pixels int64 `json:"pixels"`
}

// layerName returns the name a layer is reported under.
func layerName(n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return n.GetName()
	}
	if len(n.GetOutput()) > 0 {
		return n.GetOutput()[0]
	}
	return ""
}

// BreakEvenRank returns the largest rank r at which an LPR module over C
// channels with residualParams extra parameters has fewer parameters than
// the C x C weight it replaces (r*2C + residualParams < C*C), or 0 when no
// rank is worth it.
func BreakEvenRank(c, residualParams int) int {
	if c <= 0 {
		return 0
	}
	room := c*c - residualParams - 1 // largest allowed r*2C
	if room < 0 {
		return 0
	}
	return room / (2 * c)
}

// candidateCheck decides whether node i is an LPR candidate; the string
// says why not when it is not. Only Conv nodes with 1x1 kernels get a
// reason; others return "".
func candidateCheck(ix *graphIndex, i int) (*Candidate, string) {
	return candidateCheckOpts(ix, i, CandidateOptions{})
}

// candidateCheckOpts is candidateCheck that also accepts C_in != C_out
// when opts.NonSquare is set.
func candidateCheckOpts(ix *graphIndex, i int, opts CandidateOptions) (*Candidate, string) {
	n := ix.g.GetNode()[i]
	if n.GetOpType() != "Conv" || !isDefaultDomain(n) {
		return nil, ""
	}
	w, ok := ix.constTensor(input(n, 1))
	if !ok {
		return nil, "weight is not a constant initializer"
	}
	dims := w.GetDims()
	if len(dims) != 4 || dims[2] != 1 || dims[3] != 1 {
		return nil, ""
	}
	if k, ok := attrInts(n, "kernel_shape"); ok && (len(k) != 2 || k[0] != 1 || k[1] != 1) {
		return nil, ""
	}
	if !isFloatType(w.GetDataType()) {
		return nil, "weight is not floating point"
	}
	if g := attrInt(n, "group", 1); g != 1 {
		return nil, fmt.Sprintf("group %d", g)
	}
	if s, ok := attrInts(n, "strides"); ok {
		for _, v := range s {
			if v != 1 {
				return nil, fmt.Sprintf("stride %v", s)
			}
		}
	}
	if p, ok := attrInts(n, "pads"); ok {
		for _, v := range p {
			if v != 0 {
				return nil, fmt.Sprintf("padding %v", p)
			}
		}
	}
	if dims[0] != dims[1] && !opts.NonSquare {
		return nil, fmt.Sprintf("C_in %d != C_out %d", dims[1], dims[0])
	}
	if ix.inputs[input(n, 1)] {
		return nil, "weight is also a graph input (can be overridden at run time)"
	}
	c := &Candidate{
		Name:      layerName(n),
		Node:      i,
		Input:     input(n, 0),
		Output:    n.GetOutput()[0],
		Channels:  int(dims[0]),
		Weight:    input(n, 1),
		Bias:      input(n, 2),
		BatchNorm: -1,
	}
	if dims[0] != dims[1] {
		c.InChannels = int(dims[1])
	}
	if c.Bias != "" {
		b, ok := ix.constTensor(c.Bias)
		if !ok || ix.inputs[c.Bias] {
			return nil, "bias is not a constant initializer"
		}
		if !isFloatType(b.GetDataType()) || len(b.GetDims()) != 1 || b.GetDims()[0] != dims[0] {
			return nil, fmt.Sprintf("bias has dims %v, want [%d]", b.GetDims(), dims[0])
		}
	}
	if bn := foldableBN(ix, n); bn >= 0 {
		c.BatchNorm = bn
		c.Output = ix.g.GetNode()[bn].GetOutput()[0]
	}
	return c, ""
}

// foldableBN returns the index of a BatchNormalization node that is the
// only consumer of conv's output and has constant parameters, or -1.
func foldableBN(ix *graphIndex, conv *onnxpb.NodeProto) int {
	out := conv.GetOutput()[0]
	cons := ix.consumers[out]
	if len(cons) != 1 || ix.outputs[out] {
		return -1
	}
	bn := ix.g.GetNode()[cons[0]]
	if bn.GetOpType() != "BatchNormalization" || !isDefaultDomain(bn) || input(bn, 0) != out {
		return -1
	}
	if attrInt(bn, "training_mode", 0) != 0 {
		return -1
	}
	for i, o := range bn.GetOutput() {
		if i > 0 && o != "" && (len(ix.consumers[o]) > 0 || ix.outputs[o]) {
			return -1 // training outputs in use
		}
	}
	for i := 1; i <= 4; i++ {
		t, ok := ix.constTensor(input(bn, i))
		if !ok || ix.inputs[input(bn, i)] || !isFloatType(t.GetDataType()) {
			return -1
		}
	}
	return cons[0]
}

// FindCandidates lists the LPR candidates of the model's main graph in
// node order: Conv nodes with a 1x1 kernel, group 1, stride 1, no padding,
// as many input as output channels, and a constant weight initializer.
// Pixels is filled from static shape inference with opts.
func FindCandidates(m *onnxpb.ModelProto, opts ShapeOptions) ([]Candidate, error) {
	return FindCandidatesWith(m, opts, CandidateOptions{})
}

// indexGraph returns m's graph with its inferred shapes and node index.
func indexGraph(m *onnxpb.ModelProto, opts ShapeOptions) (*onnxpb.GraphProto, *Shapes, *graphIndex, error) {
	g := m.GetGraph()
	if g == nil {
		return nil, nil, nil, fmt.Errorf("model has no graph")
	}
	shapes, err := InferShapes(m, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	return g, shapes, newGraphIndex(g), nil
}

// FindCandidatesWith is FindCandidates with candidate options (e.g.
// non-square 1x1 convolutions).
func FindCandidatesWith(m *onnxpb.ModelProto, opts ShapeOptions, copts CandidateOptions) ([]Candidate, error) {
	g, shapes, ix, err := indexGraph(m, opts)
	if err != nil {
		return nil, err
	}
	var out []Candidate
	for i := range g.GetNode() {
		c, _ := candidateCheckOpts(ix, i, copts)
		if c == nil {
			continue
		}
		if v := shapes.Get(g.GetNode()[i].GetOutput()[0]); v.Known && len(v.Shape) == 4 {
			c.Pixels = checked.SatProduct(v.Shape[0], v.Shape[2], v.Shape[3])
		}
		out = append(out, *c)
	}
	return out, nil
}
