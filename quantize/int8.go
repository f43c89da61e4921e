package quantize

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Int8Options tunes ToInt8 and Int8.
type Int8Options struct {
	// Calibrate tunes the calibration run of Int8.
	Calibrate CalibrateOptions
	// Activations is the activations' element type: onnxio.Uint8 (the
	// zero value is taken as Uint8) or onnxio.Int8. Either grid is
	// asymmetric, spanning [min(0, r.Min), max(0, r.Max)] with 0 exact,
	// so that the output quantizer of a Conv, Gemm or Add clamps at zero
	// and a following Relu can be folded into it. Uint8 is ONNX Runtime's
	// fast path on x86-64: with int8 activations it fuses fewer nodes
	// (bench/quantize/README.md).
	Activations onnxio.DataType
}

// Int8Report says what ToInt8 did.
type Int8Report struct {
	// Nodes counts the nodes given quantized inputs, by operator type.
	Nodes map[string]int `json:"nodes"`
	// Weights counts the weight tensors stored as per-channel int8, Biases
	// those stored as int32, Activations the activation tensors quantized
	// (each a QuantizeLinear/DequantizeLinear pair), Calibrated those with
	// a calibrated range of their own (the others share their producer's
	// input range: Reshape, Transpose, MaxPool and other data movers).
	Weights     int `json:"weights"`
	Biases      int `json:"biases"`
	Activations int `json:"activations"`
	Calibrated  int `json:"calibrated"`
	// FoldedRelu counts the Relu nodes removed: a Relu after a Conv, Gemm
	// or Add is what the output quantizer's clamp at zero already does.
	FoldedRelu int `json:"folded_relu"`
}

// quantizedOp reports whether ToInt8 quantizes the float activations op
// reads and writes; passThrough, whether op's outputs hold a subset of its
// first input's values, so that they share its quantization grid.
func quantizedOp(op string) bool {
	switch op {
	case "Conv", "Gemm", "Add", "Concat", "GlobalAveragePool", "AveragePool":
		return true
	}
	return passThrough(op)
}

func passThrough(op string) bool {
	switch op {
	case "MaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Split", "Identity":
		return true
	}
	return false
}

// int8Plan is the analysis ToInt8 and ActivationValues share: the graph
// with Relus folded, and which activations are quantized on whose grid.
type int8Plan struct {
	model  *onnxpb.ModelProto
	types  map[string]onnxio.DataType
	inits  map[string]*onnxpb.TensorProto
	quant  map[string]string // quantized activation → the value whose range it uses
	order  []string          // quantized activations in graph order
	weight map[*onnxpb.NodeProto]bool
	folded int
}

// planInt8 clones m, folds Relus into their producer and chooses the
// activations to quantize.
func planInt8(m *onnxpb.ModelProto) (*int8Plan, error) {
	if v := onnxio.OpsetVersion(m); v < 13 {
		return nil, fmt.Errorf("int8: the model imports opset %d; per-channel QuantizeLinear needs opset 13 or later (re-export the model at opset 13)", v)
	}
	out := proto.Clone(m).(*onnxpb.ModelProto)
	g := out.GetGraph()
	if g == nil {
		return nil, fmt.Errorf("int8: model has no graph")
	}
	types, err := elemTypes(g)
	if err != nil {
		return nil, fmt.Errorf("int8: %w", err)
	}
	p := &int8Plan{model: out, types: types, inits: map[string]*onnxpb.TensorProto{}, quant: map[string]string{}, weight: map[*onnxpb.NodeProto]bool{}}
	for _, t := range g.GetInitializer() {
		p.inits[t.GetName()] = t
	}
	outputs := map[string]bool{}
	for _, o := range g.GetOutput() {
		outputs[o.GetName()] = true
	}
	producer := map[string]*onnxpb.NodeProto{}
	uses := map[string]int{}
	for _, n := range g.GetNode() {
		for _, v := range n.GetInput() {
			uses[v]++
		}
		for _, v := range n.GetOutput() {
			producer[v] = n
		}
	}
	// Fold Relu into a Conv, Gemm or Add that feeds nothing else.
	var nodes []*onnxpb.NodeProto
	removed := map[string]bool{}
	for _, n := range g.GetNode() {
		if n.GetOpType() == "Relu" && onnxio.IsDefaultDomain(n) && len(n.GetInput()) == 1 {
			x := n.GetInput()[0]
			if pr := producer[x]; pr != nil && onnxio.IsDefaultDomain(pr) && uses[x] == 1 && !outputs[x] && types[x] == onnxio.Float &&
				(pr.GetOpType() == "Conv" || pr.GetOpType() == "Gemm" || pr.GetOpType() == "Add") && len(pr.GetOutput()) == 1 {
				pr.Output[0] = n.GetOutput()[0]
				removed[x] = true
				p.folded++
				continue
			}
		}
		nodes = append(nodes, n)
	}
	g.Node = nodes
	var vi []*onnxpb.ValueInfoProto
	for _, v := range g.GetValueInfo() {
		if !removed[v.GetName()] {
			vi = append(vi, v)
		}
	}
	g.ValueInfo = vi
	isAct := func(v string) bool { return v != "" && types[v] == onnxio.Float && p.inits[v] == nil }
	mark := func(v, src string) {
		if _, ok := p.quant[v]; !ok {
			p.quant[v] = src
			p.order = append(p.order, v)
		}
	}
	root := func(v string) string {
		if s, ok := p.quant[v]; ok {
			return s
		}
		return v
	}
	for _, n := range g.GetNode() {
		op := n.GetOpType()
		if !onnxio.IsDefaultDomain(n) || !quantizedOp(op) {
			continue
		}
		in := n.GetInput()
		switch op {
		case "Conv", "Gemm":
			if len(in) < 2 || p.inits[in[1]] == nil || types[in[1]] != onnxio.Float || !isAct(in[0]) {
				continue
			}
			if len(in) > 2 && in[2] != "" && (p.inits[in[2]] == nil || types[in[2]] != onnxio.Float) {
				continue
			}
			if op == "Gemm" && onnxio.AttrInt(n, "transA", 0) != 0 {
				continue
			}
			p.weight[n] = true
			mark(in[0], in[0])
		case "Add":
			if len(in) != 2 || !isAct(in[0]) || !isAct(in[1]) {
				continue
			}
			mark(in[0], in[0])
			mark(in[1], in[1])
		default:
			if !isAct(in[0]) {
				continue
			}
			if op == "Concat" {
				for _, v := range in {
					if isAct(v) {
						mark(v, v)
					}
				}
			} else {
				mark(in[0], root(in[0]))
			}
		}
		for _, o := range n.GetOutput() {
			if !isAct(o) || outputs[o] {
				continue
			}
			if passThrough(op) {
				mark(o, root(in[0]))
			} else {
				mark(o, o)
			}
		}
	}
	return p, nil
}

// ActivationValues returns the float activations of m whose ranges ToInt8
// needs (graph inputs and node outputs, with the names they have in m), in
// graph order. It fails when m cannot be quantized (opset below 13, already
// quantized).
func ActivationValues(m *onnxpb.ModelProto) ([]string, error) {
	p, err := planInt8(m)
	if err != nil {
		return nil, err
	}
	var vs []string
	for _, v := range p.order {
		if p.quant[v] == v {
			vs = append(vs, v)
		}
	}
	return vs, nil
}

// Int8 calibrates m on src (see Calibrate) and quantizes it (see ToInt8),
// adding the calibration settings to the metadata.
func Int8(ctx context.Context, m *onnxpb.ModelProto, src dataset.Batches, opts Int8Options) (*onnxpb.ModelProto, *Int8Report, error) {
	values, err := ActivationValues(m)
	if err != nil {
		return nil, nil, err
	}
	ranges, err := Calibrate(ctx, m, values, src, opts.Calibrate)
	if err != nil {
		return nil, nil, err
	}
	q, rep, err := ToInt8(m, ranges, opts)
	if err != nil {
		return nil, nil, err
	}
	md, _, err := ReadMetadata(q)
	if err != nil {
		return nil, nil, err
	}
	c := opts.Calibrate
	md.Method, md.Samples = c.Method.String(), c.Samples
	if md.Samples <= 0 {
		md.Samples = DefaultSamples
	}
	if c.Method == Percentile {
		md.Percentile = c.Percentile
		if md.Percentile == 0 {
			md.Percentile = DefaultPercentile
		}
	}
	return q, rep, writeMetadata(q, *md)
}

// qparams is one activation grid: x̂ = Scale·(q − Zero).
type qparams struct {
	Scale float32
	Zero  int32
}

// activationParams returns the grid of an activation of range r.
func activationParams(r Range, opts Int8Options) (qparams, error) {
	lo, hi := float64(min(0, r.Min)), float64(max(0, r.Max))
	if math.IsInf(lo, 0) || math.IsInf(hi, 0) || math.IsNaN(lo) || math.IsNaN(hi) {
		return qparams{}, fmt.Errorf("range [%g, %g] is not finite", r.Min, r.Max)
	}
	qmin, qmax := 0.0, 255.0
	if opts.Activations == onnxio.Int8 {
		qmin, qmax = -128, 127
	}
	if hi == lo {
		return qparams{Scale: 1, Zero: int32(qmin)}, nil
	}
	s := (hi - lo) / (qmax - qmin)
	z := math.RoundToEven(qmin - lo/s)
	return qparams{Scale: float32(s), Zero: int32(max(qmin, min(qmax, z)))}, nil
}

// ToInt8 returns a copy of m in QDQ form: every Conv and Gemm with a
// float32 initializer weight gets a per-output-channel symmetric int8
// weight (s_c = max|W_c|/127, values clamped to [−127, 127]) and an int32
// bias (s = s_x·s_c), each read through a DequantizeLinear; every float
// activation that such a node, an Add of two activations, a Concat, a
// pooling or a data-moving operator reads or writes (except graph outputs)
// passes through a QuantizeLinear/DequantizeLinear pair whose grid comes
// from ranges (keyed by the names ActivationValues returns). Relus after a
// Conv, Gemm or Add are folded into the output quantizer. Metadata
// records the conversion (MetadataKey). m is not modified.
func ToInt8(m *onnxpb.ModelProto, ranges map[string]Range, opts Int8Options) (*onnxpb.ModelProto, *Int8Report, error) {
	if opts.Activations == 0 {
		opts.Activations = onnxio.Uint8
	}
	if opts.Activations != onnxio.Uint8 && opts.Activations != onnxio.Int8 {
		return nil, nil, fmt.Errorf("int8: activation type %s is not uint8 or int8", opts.Activations)
	}
	p, err := planInt8(m)
	if err != nil {
		return nil, nil, err
	}
	g := p.model.GetGraph()
	rep := &Int8Report{Nodes: map[string]int{}, FoldedRelu: p.folded}
	nm := onnxio.GraphNames(g)
	params := map[string]qparams{}
	grid := map[string][2]string{} // root → scale, zero point initializer names
	var inits []*onnxpb.TensorProto
	for _, v := range p.order {
		r := p.quant[v]
		if _, ok := params[r]; ok {
			continue
		}
		rg, ok := ranges[r]
		if !ok {
			return nil, nil, fmt.Errorf("int8: no calibrated range for activation %q", r)
		}
		qp, err := activationParams(rg, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("int8: activation %q: %w", r, err)
		}
		params[r] = qp
		sn, zn := nm.Fresh(r+"/scale"), nm.Fresh(r+"/zero_point")
		inits = append(inits, onnxio.NewFloat32(sn, nil, []float32{qp.Scale}), newInt8Tensor(zn, opts.Activations, nil, []int32{qp.Zero}))
		grid[r] = [2]string{sn, zn}
		rep.Calibrated++
	}
	dq := map[string]string{}
	qv := map[string]string{} // activation → its quantized value
	var pre, nodes []*onnxpb.NodeProto
	quantize := func(v string, dst *[]*onnxpb.NodeProto) {
		gr := grid[p.quant[v]]
		q, d := nm.Fresh(v+"/q"), nm.Fresh(v+"/dq")
		*dst = append(*dst,
			&onnxpb.NodeProto{OpType: "QuantizeLinear", Input: []string{v, gr[0], gr[1]}, Output: []string{q}},
			&onnxpb.NodeProto{OpType: "DequantizeLinear", Input: []string{q, gr[0], gr[1]}, Output: []string{d}})
		dq[v], qv[v] = d, q
		rep.Activations++
	}
	for _, in := range g.GetInput() {
		if _, ok := p.quant[in.GetName()]; ok {
			quantize(in.GetName(), &pre)
		}
	}
	weights := map[string][]float32{} // weight initializer → its channel scales
	for _, n := range g.GetNode() {
		in := n.GetInput()
		if p.weight[n] {
			axis := 0
			if n.GetOpType() == "Gemm" && onnxio.AttrInt(n, "transB", 0) == 0 {
				axis = 1
			}
			xs := params[p.quant[in[0]]].Scale
			var bias []float32
			if len(in) > 2 && in[2] != "" {
				if bias, err = onnxio.Float32s(p.inits[in[2]]); err != nil {
					return nil, nil, fmt.Errorf("int8: node %q bias: %w", n.GetName(), err)
				}
			}
			wq, ws, err := quantizeWeight(p.inits[in[1]], axis, xs, bias)
			if err != nil {
				return nil, nil, fmt.Errorf("int8: node %q: %w", n.GetName(), err)
			}
			key := in[1]
			if bias != nil {
				key = "" // the bias may have widened the scales: quantize per node
			}
			wd, ok := "", false
			if key != "" {
				_, ok = weights[key]
				wd = dq[key]
			}
			if !ok {
				name := in[1]
				// ONNX Runtime's QGemm fusion wants the weight's zero
				// point present and shaped like its scale.
				qn, sn, zn, dn := nm.Fresh(name+"/int8"), nm.Fresh(name+"/scale"), nm.Fresh(name+"/zero_point"), nm.Fresh(name+"/dq")
				wq.Name = qn
				var sdims []int64
				if len(ws) > 1 {
					sdims = []int64{int64(len(ws))}
				}
				inits = append(inits, wq, onnxio.NewFloat32(sn, sdims, ws), newInt8Tensor(zn, onnxio.Int8, sdims, make([]int32, len(ws))))
				pre = append(pre, dqNode(qn, sn, zn, dn, axis))
				wd = dn
				rep.Weights++
				if key != "" {
					weights[key] = ws
					dq[key] = dn
				}
			}
			n.Input[1] = wd
			if bias != nil {
				name := in[2]
				bs := make([]float32, len(ws))
				bq := make([]int32, len(ws))
				for c := range bs {
					bs[c] = xs * ws[min(c, len(ws)-1)]
					bq[c] = int32(math.RoundToEven(float64(bias[c]) / float64(bs[c])))
				}
				qn, sn, dn := nm.Fresh(name+"/int32"), nm.Fresh(name+"/scale"), nm.Fresh(name+"/dq")
				inits = append(inits, newInt32Tensor(qn, []int64{int64(len(bq))}, bq), onnxio.NewFloat32(sn, []int64{int64(len(bs))}, bs))
				pre = append(pre, dqNode(qn, sn, "", dn, 0))
				n.Input[2] = dn
				rep.Biases++
			}
		}
		used := false
		shape := onnxio.IsDefaultDomain(n) && (n.GetOpType() == "Shape" || n.GetOpType() == "Size")
		for i, v := range in {
			if d, ok := dq[v]; ok && p.inits[v] == nil {
				// Shape reads the 8-bit value, so that the
				// DequantizeLinear feeds one node and ONNX
				// Runtime can fuse it.
				if shape {
					d = qv[v]
				}
				n.Input[i] = d
				used = true
			}
		}
		if used {
			rep.Nodes[n.GetOpType()]++
		}
		nodes = append(nodes, n)
		for _, o := range n.GetOutput() {
			if _, ok := p.quant[o]; ok {
				quantize(o, &nodes)
			}
		}
	}
	g.Node = append(pre, nodes...)
	// Drop the float weights and biases that no node reads any more.
	read := map[string]bool{}
	for _, n := range g.GetNode() {
		for _, v := range n.GetInput() {
			read[v] = true
		}
	}
	for _, o := range g.GetOutput() {
		read[o.GetName()] = true
	}
	var kept []*onnxpb.TensorProto
	for _, t := range g.GetInitializer() {
		if read[t.GetName()] {
			kept = append(kept, t)
		}
	}
	g.Initializer = append(kept, inits...)
	var ins []*onnxpb.ValueInfoProto
	for _, v := range g.GetInput() {
		if p.inits[v.GetName()] == nil || read[v.GetName()] {
			ins = append(ins, v)
		}
	}
	g.Input = ins
	act := "uint8"
	if opts.Activations == onnxio.Int8 {
		act = "int8"
	}
	if err := writeMetadata(p.model, Metadata{Precision: "int8", Activations: act}); err != nil {
		return nil, nil, err
	}
	return p.model, rep, nil
}

// quantizeWeight quantizes a float weight per channel along axis (0 or 1 of
// its dims): s_c = max|W_c|/127 (1 for an all-zero channel), widened where
// a bias value would not fit int32 at scale xs·s_c, and q = round(W/s_c)
// clamped to [−127, 127].
func quantizeWeight(t *onnxpb.TensorProto, axis int, xs float32, bias []float32) (*onnxpb.TensorProto, []float32, error) {
	w, err := onnxio.Float32s(t)
	if err != nil {
		return nil, nil, fmt.Errorf("weight %q: %w", t.GetName(), err)
	}
	dims := t.GetDims()
	if len(dims) <= axis || (axis == 1 && len(dims) != 2) {
		return nil, nil, fmt.Errorf("weight %q of shape %v has no axis %d to quantize along", t.GetName(), dims, axis)
	}
	channels := int(dims[axis])
	if bias != nil && len(bias) != channels {
		return nil, nil, fmt.Errorf("bias has %d values for %d channels of weight %q", len(bias), channels, t.GetName())
	}
	// Element i lies in channel (i / inner) % channels.
	inner := 1
	for _, d := range dims[axis+1:] {
		inner *= int(d)
	}
	ch := func(i int) int { return (i / inner) % channels }
	amax := make([]float64, channels)
	for i, v := range w {
		amax[ch(i)] = max(amax[ch(i)], math.Abs(float64(v)))
	}
	if inner*channels == len(w) && len(w) == channels && channels > 1 {
		// One weight per channel (a diag residual): a scale per channel
		// would outweigh the weights, so one scale covers the tensor.
		a := 0.0
		for _, v := range amax {
			a = max(a, v)
		}
		amax = []float64{a}
		ch = func(int) int { return 0 }
	}
	scales := make([]float32, len(amax))
	for c, a := range amax {
		s := a / 127
		if s == 0 {
			s = 1
		}
		if bias != nil && xs > 0 {
			// |b|/(xs·s) must stay within int32.
			for _, b := range bias[c : c+len(bias)-len(amax)+1] {
				s = max(s, math.Abs(float64(b))/(float64(xs)*(math.MaxInt32-1)))
			}
		}
		scales[c] = float32(s)
	}
	raw := make([]byte, len(w))
	for i, v := range w {
		q := math.RoundToEven(float64(v) / float64(scales[ch(i)]))
		raw[i] = byte(int8(max(-127, min(127, q))))
	}
	return &onnxpb.TensorProto{Dims: append([]int64(nil), dims...), DataType: int32(onnxio.Int8), RawData: raw}, scales, nil
}

// dqNode dequantizes a weight or bias along axis, or per tensor when the
// scale is a scalar; an empty zero means a zero point of 0, left out.
func dqNode(q, scale, zero, out string, axis int) *onnxpb.NodeProto {
	n := &onnxpb.NodeProto{OpType: "DequantizeLinear", Input: []string{q, scale}, Output: []string{out}}
	if zero != "" {
		n.Input = append(n.Input, zero)
	}
	n.Attribute = []*onnxpb.AttributeProto{{Name: "axis", Type: onnxpb.AttributeProto_INT, I: int64(axis)}}
	return n
}

// newInt8Tensor returns an INT8 or UINT8 tensor of the given values.
func newInt8Tensor(name string, dt onnxio.DataType, dims []int64, v []int32) *onnxpb.TensorProto {
	raw := make([]byte, len(v))
	for i, x := range v {
		raw[i] = byte(x)
	}
	return &onnxpb.TensorProto{Name: name, Dims: dims, DataType: int32(dt), RawData: raw}
}

func newInt32Tensor(name string, dims []int64, v []int32) *onnxpb.TensorProto {
	raw := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], uint32(x))
	}
	return &onnxpb.TensorProto{Name: name, Dims: dims, DataType: int32(onnxio.Int32), RawData: raw}
}
