package convert

import (
	"fmt"
	"math"
	"sort"

	"github.com/lprconv/lprconv/internal/checked"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Layer describes one node that holds parameters or does the bulk of the
// arithmetic (Conv, Gemm, MatMul, BatchNormalization, and Mul/Add by a
// constant tensor).
type Layer struct {
	Name        string  `json:"name"`
	Op          string  `json:"op"`
	Kernel      []int64 `json:"kernel"`
	Stride      []int64 `json:"stride,omitempty"`
	Group       int64   `json:"group"`
	InChannels  int64   `json:"in_channels"`
	OutChannels int64   `json:"out_channels"`
	// OutputShape is the inferred shape of the layer's first output (nil
	// when unknown).
	OutputShape []int64 `json:"output_shape"`
	// Params counts the elements of the layer's constant float inputs
	// (weights, biases, BatchNorm statistics).
	Params int64 `json:"params"`
	// MACs counts multiply-accumulates for the inspected input shape:
	// Conv N*Cout*Hout*Wout*(Cin/group)*kh*kw (bias not counted), Gemm and
	// MatMul M*N*K, BatchNormalization and Mul one per output element,
	// Add none.
	MACs int64 `json:"macs"`
	// Candidate marks an LPR candidate; BreakEvenRank is then the largest
	// rank at which a residual-free LPR module has fewer parameters.
	Candidate     bool `json:"candidate"`
	BreakEvenRank int  `json:"break_even_rank,omitempty"`
	// NotCandidate says why a 1x1 Conv is not a candidate.
	NotCandidate string `json:"not_candidate,omitempty"`
	// NonSquareBreakEvenRank is set on 1x1 Convs that qualify only as
	// non-square candidates (C_in != C_out, see CandidateOptions): the
	// largest rank r with r*(C_in+C_out) < C_in*C_out.
	NonSquareBreakEvenRank int `json:"nonsquare_break_even_rank,omitempty"`
	// FoldsBatchNorm is set on candidates followed by a foldable
	// BatchNormalization.
	FoldsBatchNorm bool `json:"folds_batchnorm,omitempty"`
}

// Summary is the result of Inspect.
type Summary struct {
	// Params counts the elements of every distinct float tensor
	// (initializer or Constant) that some node reads.
	Params int64 `json:"params"`
	// MACs is the sum of the layers' MACs.
	MACs int64 `json:"macs"`
	// FileBytes is the size of the model file; Inspect leaves it 0 for the
	// caller to fill.
	FileBytes       int64              `json:"file_bytes"`
	Opset           int64              `json:"opset"`
	IRVersion       int64              `json:"ir_version"`
	Producer        string             `json:"producer"`
	ProducerVersion string             `json:"producer_version,omitempty"`
	Nodes           int                `json:"nodes"`
	Inputs          map[string][]int64 `json:"inputs"`
	Outputs         map[string][]int64 `json:"outputs"`
	Candidates      int                `json:"candidates"`
	// CandidateParams and CandidateMACs total the candidates' weights and
	// arithmetic (what LPR can shrink).
	CandidateParams int64     `json:"candidate_params"`
	CandidateMACs   int64     `json:"candidate_macs"`
	OpCounts        []OpCount `json:"op_counts"`
	Layers          []Layer   `json:"layers"`
	Warnings        []string  `json:"warnings,omitempty"`
}

// OpCount is how many nodes of one operator type the graph has.
type OpCount struct {
	Op    string `json:"op"`
	Count int    `json:"count"`
}

// Inspect summarizes the model: per-layer shapes, parameters and MACs,
// LPR candidates, and totals. Dynamic input dims are taken as 1 unless
// opts overrides them.
func Inspect(m *onnxpb.ModelProto, opts ShapeOptions) (*Summary, error) {
	g, shapes, ix, err := indexGraph(m, opts)
	if err != nil {
		return nil, err
	}
	s := &Summary{
		Opset:           opsetVersion(m),
		IRVersion:       m.GetIrVersion(),
		Producer:        m.GetProducerName(),
		ProducerVersion: m.GetProducerVersion(),
		Nodes:           len(g.GetNode()),
		Inputs:          map[string][]int64{},
		Outputs:         map[string][]int64{},
		Warnings:        shapes.Warnings,
	}
	for _, in := range g.GetInput() {
		if _, isInit := ix.inits[in.GetName()]; !isInit {
			s.Inputs[in.GetName()] = shapes.Get(in.GetName()).Shape
		}
	}
	for _, out := range g.GetOutput() {
		s.Outputs[out.GetName()] = shapes.Get(out.GetName()).Shape
	}
	counts := map[string]int{}
	seen := map[*onnxpb.TensorProto]bool{}
	for i, n := range g.GetNode() {
		counts[n.GetOpType()]++
		for _, in := range n.GetInput() {
			if t, ok := ix.constTensor(in); ok && !seen[t] && isFloatType(t.GetDataType()) {
				seen[t] = true
				k, err := onnxio.NumElements(t)
				if err != nil {
					return nil, fmt.Errorf("%s: input %q: %w", nodeLabel(n), in, err)
				}
				s.Params = checked.SatAdd(s.Params, int64(k))
			}
		}
		l, err := layerOf(ix, shapes, i)
		if err != nil {
			return nil, err
		}
		if l == nil {
			continue
		}
		s.MACs = checked.SatAdd(s.MACs, l.MACs)
		if l.Candidate {
			s.Candidates++
			s.CandidateParams = checked.SatAdd(s.CandidateParams, checked.SatMul(l.InChannels, l.OutChannels))
			s.CandidateMACs = checked.SatAdd(s.CandidateMACs, l.MACs)
		}
		s.Layers = append(s.Layers, *l)
	}
	if checked.Saturated(s.MACs) || checked.Saturated(s.Params) {
		s.Warnings = append(s.Warnings, fmt.Sprintf("the parameter or MAC count exceeds %d for inputs %v and is shown saturated at that value; give smaller input dims", int64(math.MaxInt64), s.Inputs))
	}
	for op, c := range counts {
		s.OpCounts = append(s.OpCounts, OpCount{Op: op, Count: c})
	}
	sort.Slice(s.OpCounts, func(i, j int) bool {
		if s.OpCounts[i].Count != s.OpCounts[j].Count {
			return s.OpCounts[i].Count > s.OpCounts[j].Count
		}
		return s.OpCounts[i].Op < s.OpCounts[j].Op
	})
	return s, nil
}

// constParams sums the elements of the node's constant float inputs.
func constParams(ix *graphIndex, n *onnxpb.NodeProto) int64 {
	var p int64
	for _, in := range n.GetInput() {
		if t, ok := ix.constTensor(in); ok && isFloatType(t.GetDataType()) {
			if k, err := onnxio.NumElements(t); err == nil {
				p = checked.SatAdd(p, int64(k))
			}
		}
	}
	return p
}

// layerOf describes node i as a Layer, or returns nil for nodes that are
// not layers.
func layerOf(ix *graphIndex, shapes *Shapes, i int) (*Layer, error) {
	n := ix.g.GetNode()[i]
	if !isDefaultDomain(n) {
		return nil, nil
	}
	out := shapes.Get(n.GetOutput()[0])
	l := &Layer{Name: layerName(n), Op: n.GetOpType(), Group: 1}
	if out.Known {
		l.OutputShape = out.Shape
	}
	switch n.GetOpType() {
	case "Conv":
		w := shapes.Get(input(n, 1))
		if !w.Known || len(w.Shape) < 3 {
			return l, nil
		}
		l.Group = attrInt(n, "group", 1)
		l.Kernel = append([]int64{}, w.Shape[2:]...)
		l.Stride, _ = attrInts(n, "strides")
		l.OutChannels = w.Shape[0]
		l.InChannels = w.Shape[1] * l.Group
		l.Params = constParams(ix, n)
		if out.Known {
			macs := checked.SatMul(elements(out), w.Shape[1])
			for _, k := range l.Kernel {
				macs = checked.SatMul(macs, k)
			}
			l.MACs = macs
		}
		c, why := candidateCheck(ix, i)
		if c != nil {
			l.Candidate = true
			l.BreakEvenRank = BreakEvenRank(c.Channels, 0)
			l.FoldsBatchNorm = c.BatchNorm >= 0
		}
		l.NotCandidate = why
		if c == nil {
			l.NonSquareBreakEvenRank = nonSquareBreakEven(ix, i)
		}
	case "Gemm":
		a, b := shapes.Get(input(n, 0)), shapes.Get(input(n, 1))
		l.Params = constParams(ix, n)
		if a.Known && b.Known && len(a.Shape) == 2 && len(b.Shape) == 2 {
			k, nn := b.Shape[0], b.Shape[1]
			if attrInt(n, "transB", 0) != 0 {
				k, nn = nn, k
			}
			l.InChannels, l.OutChannels = k, nn
			if out.Known {
				l.MACs = checked.SatMul(elements(out), k)
			}
		}
	case "MatMul":
		a, b := shapes.Get(input(n, 0)), shapes.Get(input(n, 1))
		l.Params = constParams(ix, n)
		if a.Known && b.Known && len(a.Shape) > 0 && len(b.Shape) > 0 {
			k := a.Shape[len(a.Shape)-1]
			l.InChannels = k
			if len(b.Shape) >= 2 {
				l.OutChannels = b.Shape[len(b.Shape)-1]
			}
			if out.Known {
				l.MACs = checked.SatMul(elements(out), k)
			}
		}
	case "BatchNormalization":
		l.Params = constParams(ix, n)
		if out.Known && len(out.Shape) > 1 {
			l.InChannels, l.OutChannels = out.Shape[1], out.Shape[1]
			l.MACs = elements(out)
		}
	case "Mul", "Add":
		// Only a product or sum with a constant tensor of more than one
		// element (a per-channel scale or shift) is a layer.
		p := int64(0)
		for _, in := range n.GetInput() {
			if v := shapes.Get(in); v.Known && elements(v) > 1 {
				if t, ok := ix.constTensor(in); ok && isFloatType(t.GetDataType()) {
					p = checked.SatAdd(p, elements(v))
				}
			}
		}
		if p == 0 {
			return nil, nil
		}
		l.Params = p
		if out.Known && len(out.Shape) > 1 {
			l.InChannels, l.OutChannels = out.Shape[1], out.Shape[1]
			if n.GetOpType() == "Mul" {
				l.MACs = elements(out)
			}
		}
	default:
		return nil, nil
	}
	return l, nil
}

// elements is the number of elements of a known shape, saturated at
// math.MaxInt64: declared input dims are untrusted, and a product such as
// 1·3·2³⁰·2³⁰ channels·pixels would wrap in int64.
func elements(v *Value) int64 {
	return checked.SatProduct(v.Shape...)
}
