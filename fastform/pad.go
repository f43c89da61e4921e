package fastform

import (
	"slices"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// PadMultiple is the channel multiple to which Rewrite pads the inner
// width of a Conv → depthwise Conv → Conv chain. ONNX Runtime runs a
// convolution in its blocked (NCHWc) layout only when its channel counts
// are multiples of 4; a depthwise convolution outside it takes several
// times as long (ShuffleNetV2 x1.0's 58-channel stage: 7.6 ms against
// about 2 ms at batch 64, bench/compress/README.md).
const PadMultiple = 4

// padChain is one chain whose inner width is padded: head (a group-1 Conv
// making C channels) → between1 → dw (a group-C Conv) → between2 → tail (a
// group-1 Conv reading C channels), where the between nodes are Relu or
// BatchNormalization.
type padChain struct {
	head, dw, tail   *onnxpb.NodeProto
	between          []*onnxpb.NodeProto // Relu and BatchNormalization nodes of the chain
	values           []string            // the C-channel values of the chain
	channels, padded int
}

// findPadChains returns the chains whose inner width is not a multiple of
// PadMultiple and can be padded.
func findPadChains(ix *graphIndex) []padChain {
	var out []padChain
	for _, dw := range ix.g.GetNode() {
		if dw.GetOpType() != "Conv" || !onnxio.IsDefaultDomain(dw) || len(dw.GetOutput()) != 1 {
			continue
		}
		w, wd, ok := ix.floats(onnxio.Input(dw, 1))
		if !ok || len(wd) != 4 || wd[1] != 1 || len(w) == 0 {
			continue
		}
		C := wd[0]
		// C = 1 is no depthwise convolution: a 1-channel group-1 Conv
		// could also be the head or tail of another chain.
		if C < 2 || onnxio.AttrInt(dw, "group", 1) != C || C%PadMultiple == 0 || !constVector(ix, onnxio.Input(dw, 2), C) {
			continue
		}
		ch := padChain{dw: dw, channels: int(C), padded: int((C + PadMultiple - 1) / PadMultiple * PadMultiple)}
		var ok1, ok2 bool
		ch.head, ok1 = walkUp(ix, &ch, dw.GetInput()[0], C)
		ch.tail, ok2 = walkDown(ix, &ch, dw.GetOutput()[0], C)
		if ok1 && ok2 {
			out = append(out, ch)
		}
	}
	return out
}

// walkUp follows v back through Relu and BatchNormalization nodes, each
// read only by the next, to the group-1 Conv that makes its C channels.
func walkUp(ix *graphIndex, ch *padChain, v string, C int64) (*onnxpb.NodeProto, bool) {
	next := ch.dw
	for {
		if !ix.only(v, next) || ix.Inputs[v] {
			return nil, false
		}
		ch.values = append(ch.values, v)
		p := ix.Producer[v]
		if p == nil || !onnxio.IsDefaultDomain(p) || len(p.GetOutput()) != 1 {
			return nil, false
		}
		switch p.GetOpType() {
		case "Relu", "BatchNormalization":
			if !zeroPreserving(ix, p, C) {
				return nil, false
			}
			ch.between = append(ch.between, p)
			next, v = p, p.GetInput()[0]
		case "Conv":
			_, wd, ok := ix.floats(onnxio.Input(p, 1))
			if !ok || len(wd) < 3 || wd[0] != C || onnxio.AttrInt(p, "group", 1) != 1 || !constVector(ix, onnxio.Input(p, 2), C) {
				return nil, false
			}
			return p, true
		default:
			return nil, false
		}
	}
}

// walkDown follows v forward through Relu and BatchNormalization nodes to
// the group-1 Conv that reads its C channels.
func walkDown(ix *graphIndex, ch *padChain, v string, C int64) (*onnxpb.NodeProto, bool) {
	for {
		cs := ix.Consumers[v]
		if len(cs) != 1 || ix.Outputs[v] {
			return nil, false
		}
		ch.values = append(ch.values, v)
		n := cs[0]
		if !onnxio.IsDefaultDomain(n) || len(n.GetInput()) == 0 || n.GetInput()[0] != v || slices.Contains(n.GetInput()[1:], v) {
			return nil, false
		}
		switch n.GetOpType() {
		case "Relu", "BatchNormalization":
			if !zeroPreserving(ix, n, C) || len(n.GetOutput()) != 1 {
				return nil, false
			}
			ch.between = append(ch.between, n)
			v = n.GetOutput()[0]
		case "Conv":
			_, wd, ok := ix.floats(onnxio.Input(n, 1))
			if !ok || len(wd) < 3 || wd[1] != C || onnxio.AttrInt(n, "group", 1) != 1 {
				return nil, false
			}
			return n, true
		default:
			return nil, false
		}
	}
}

// zeroPreserving reports whether n is a Relu, or a BatchNormalization in
// inference mode with constant [C] parameters, so that padding channels
// with zeros (and BatchNorm parameters scale 0, shift 0, mean 0, var 1)
// keeps them zero.
func zeroPreserving(ix *graphIndex, n *onnxpb.NodeProto, C int64) bool {
	switch n.GetOpType() {
	case "Relu":
		return len(n.GetInput()) == 1
	case "BatchNormalization":
		if len(n.GetInput()) != 5 || len(n.GetOutput()) != 1 || onnxio.AttrInt(n, "training_mode", 0) != 0 {
			return false
		}
		seen := map[string]bool{}
		for _, in := range n.GetInput()[1:] {
			if !constVector(ix, in, C) || in == "" || seen[in] {
				return false
			}
			seen[in] = true
		}
		return true
	}
	return false
}

// constVector reports whether name is "" (absent) or a constant float
// initializer of shape [C].
func constVector(ix *graphIndex, name string, C int64) bool {
	if name == "" {
		return true
	}
	_, d, ok := ix.floats(name)
	return ok && slices.Equal(d, []int64{C})
}

// applyPad pads the chain's inner width from C to P channels: zero output
// rows (and bias) in the head, zero channels in the depthwise Conv (group P),
// zero input columns in the tail, BatchNorm parameters that map zero to zero.
// The extra channels are zero everywhere, so every original output is the
// same sum with exact zeros added.
func applyPad(ix *graphIndex, ch padChain) {
	C, P := ch.channels, ch.padded
	padRows := func(n *onnxpb.NodeProto, i int, fill float32) {
		name := onnxio.Input(n, i)
		if name == "" {
			return
		}
		v, d, _ := ix.floats(name)
		per := len(v) / C
		out := make([]float32, P*per)
		copy(out, v)
		for k := len(v); k < len(out); k++ {
			out[k] = fill
		}
		nd := slices.Clone(d)
		nd[0] = int64(P)
		ix.setTensor(n, i, nd, out)
	}
	padRows(ch.head, 1, 0)
	padRows(ch.head, 2, 0)
	padRows(ch.dw, 1, 0)
	padRows(ch.dw, 2, 0)
	for _, a := range ch.dw.GetAttribute() {
		if a.GetName() == "group" {
			a.I = int64(P)
		}
	}
	for _, n := range ch.between {
		if n.GetOpType() == "BatchNormalization" {
			padRows(n, 1, 0) // scale
			padRows(n, 2, 0) // shift
			padRows(n, 3, 0) // mean
			padRows(n, 4, 1) // var
		}
	}
	// The tail's weight is [M, C, kh, kw]: widen each output row.
	v, d, _ := ix.floats(onnxio.Input(ch.tail, 1))
	M, per := int(d[0]), len(v)/int(d[0])/C
	out := make([]float32, M*P*per)
	for m := 0; m < M; m++ {
		copy(out[m*P*per:], v[m*C*per:(m+1)*C*per])
	}
	nd := slices.Clone(d)
	nd[1] = int64(P)
	ix.setTensor(ch.tail, 1, nd, out)
}
