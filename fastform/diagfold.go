package fastform

import (
	"math"
	"slices"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// MinDiagRatio is the smallest |d_c| / max_k |d_k| that a diag residual may
// have to be folded. Folding divides column c of V by d_c and multiplies the
// producer's row c by it; the products keep their float32 precision at any
// scale, but a tiny d_c would make x̃'s channel subnormal (slow on CPUs)
// and V's column huge.
const MinDiagRatio = 1e-4

// diagFold is one LPR module whose diag residual folds into the producer of
// its input: add = Add(U(V(x)), D(x)), x = producer(...).
type diagFold struct {
	add, u, v, d, producer *onnxpb.NodeProto
	diag                   []float32
}

// findDiagFolds returns the modules whose diag residual can be folded.
func findDiagFolds(ix *graphIndex) []diagFold {
	var out []diagFold
	for _, a := range ix.g.GetNode() {
		if a.GetOpType() != "Add" || !onnxio.IsDefaultDomain(a) || len(a.GetInput()) != 2 {
			continue
		}
		for k := 0; k < 2; k++ {
			if f, ok := matchDiagFold(ix, a, a.GetInput()[k], a.GetInput()[1-k]); ok {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

// matchDiagFold checks add = Add(uOut, dOut) for the module form and a
// foldable producer.
func matchDiagFold(ix *graphIndex, add *onnxpb.NodeProto, uOut, dOut string) (diagFold, bool) {
	f := diagFold{add: add}
	f.d = ix.Producer[dOut]
	f.u = ix.Producer[uOut]
	if f.d == nil || f.u == nil || f.d == f.u || !isPointwiseConv(f.d) || !isPointwiseConv(f.u) || len(f.d.GetInput()) != 2 {
		return f, false
	}
	if !ix.only(dOut, add) || !ix.only(uOut, add) {
		return f, false
	}
	x := f.d.GetInput()[0]
	diag, dims, ok := ix.floats(f.d.GetInput()[1])
	C := int64(len(diag))
	if !ok || !slices.Equal(dims, []int64{C, 1, 1, 1}) || onnxio.AttrInt(f.d, "group", 1) != C || C < 1 {
		return f, false
	}
	f.v = ix.Producer[f.u.GetInput()[0]]
	if f.v == nil || !isPointwiseConv(f.v) || onnxio.AttrInt(f.v, "group", 1) != 1 || len(f.v.GetInput()) < 2 || f.v.GetInput()[0] != x {
		return f, false
	}
	if !ix.only(f.v.GetOutput()[0], f.u) || !ix.only(x, f.v, f.d) {
		return f, false
	}
	vw, vd, ok := ix.floats(f.v.GetInput()[1])
	// isPointwiseConv checked V's attributes; its kernel is also its
	// weight's [kh, kw] (column c of V is every C-th value only then).
	if !ok || len(vd) != 4 || vd[1] != C || vd[2] != 1 || vd[3] != 1 {
		return f, false
	}
	if !foldableDiag(diag) || !representable(vw, func(i int, x float32) float32 { return x / diag[i%int(C)] }) {
		return f, false
	}
	f.diag = diag
	f.producer = ix.Producer[x]
	if f.producer == nil || len(f.producer.GetOutput()) != 1 || !onnxio.IsDefaultDomain(f.producer) {
		return f, false
	}
	if homogeneous[f.producer.GetOpType()] {
		// act(d·a) = d·act(a) for d > 0: scale the activation's input.
		act := f.producer
		if len(act.GetInput()) != 1 || slices.ContainsFunc(diag, func(v float32) bool { return !(v > 0) }) {
			return f, false
		}
		a := act.GetInput()[0]
		f.producer = ix.Producer[a]
		if f.producer == nil || len(f.producer.GetOutput()) != 1 || !onnxio.IsDefaultDomain(f.producer) || !ix.only(a, act) {
			return f, false
		}
	}
	// rows reports whether the rows of v (C of them) times d stay
	// representable.
	rows := func(v []float32) bool {
		per := len(v) / int(C)
		return representable(v, func(i int, x float32) float32 { return x * diag[i/per] })
	}
	switch f.producer.GetOpType() {
	case "Conv":
		w, wd, ok := ix.floats(onnxio.Input(f.producer, 1))
		if !ok || len(wd) < 3 || wd[0] != C || len(w) == 0 || !rows(w) {
			return f, false
		}
		if b := onnxio.Input(f.producer, 2); b != "" {
			if bv, bd, ok := ix.floats(b); !ok || !slices.Equal(bd, []int64{C}) || !rows(bv) {
				return f, false
			}
		}
	case "BatchNormalization":
		if len(f.producer.GetInput()) != 5 || onnxio.AttrInt(f.producer, "training_mode", 0) != 0 {
			return f, false
		}
		for i := 1; i <= 2; i++ {
			if sv, sd, ok := ix.floats(f.producer.GetInput()[i]); !ok || !slices.Equal(sd, []int64{C}) || !rows(sv) {
				return f, false
			}
		}
	default:
		return f, false
	}
	return f, true
}

// homogeneous lists the activations that commute with a positive
// per-channel scale: act(d·a) = d·act(a) for every d > 0.
var homogeneous = map[string]bool{"Relu": true, "LeakyRelu": true}

// isPointwiseConv reports whether n is a default-domain 1×1 Conv with unit
// strides and dilations, no padding and a constant weight.
func isPointwiseConv(n *onnxpb.NodeProto) bool {
	if n.GetOpType() != "Conv" || !onnxio.IsDefaultDomain(n) || len(n.GetInput()) < 2 {
		return false
	}
	if ap := onnxio.AttrString(n, "auto_pad", "NOTSET"); ap != "NOTSET" && ap != "VALID" {
		return false
	}
	for _, attr := range []string{"kernel_shape", "strides", "dilations"} {
		if v, ok := onnxio.AttrInts(n, attr); ok && slices.ContainsFunc(v, func(x int64) bool { return x != 1 }) {
			return false
		}
	}
	if v, ok := onnxio.AttrInts(n, "pads"); ok && slices.ContainsFunc(v, func(x int64) bool { return x != 0 }) {
		return false
	}
	return true
}

// foldableDiag reports whether every d_c is finite, non-zero and at least
// MinDiagRatio of the largest |d_k|.
func foldableDiag(d []float32) bool {
	var hi float64
	for _, v := range d {
		a := math.Abs(float64(v))
		if math.IsNaN(a) || math.IsInf(a, 0) {
			return false
		}
		hi = math.Max(hi, a)
	}
	for _, v := range d {
		if a := math.Abs(float64(v)); a == 0 || a < MinDiagRatio*hi || a < 1e-30 {
			return false
		}
	}
	return true
}

// representable reports whether op maps every non-zero value of v to a
// finite, normal float32: a rescaled weight that overflowed or lost
// precision in the subnormal range would change what the model computes
// by more than round-off. Zeros stay zero under any scaling.
func representable(v []float32, op func(i int, x float32) float32) bool {
	const minNormal = 0x1p-126
	for i, x := range v {
		if x == 0 {
			continue
		}
		a := math.Abs(float64(op(i, x)))
		if math.IsNaN(a) || math.IsInf(a, 0) || a < minNormal {
			return false
		}
	}
	return true
}

// applyDiagFold scales the producer's output channels by d, divides V's
// input columns by d, removes the residual Conv and adds x̃ itself.
func applyDiagFold(ix *graphIndex, f diagFold) {
	C := len(f.diag)
	scaleRows := func(n *onnxpb.NodeProto, i int) {
		v, _, _ := ix.floats(n.GetInput()[i])
		per := len(v) / C
		out := make([]float32, len(v))
		for c := 0; c < C; c++ {
			for k := 0; k < per; k++ {
				out[c*per+k] = v[c*per+k] * f.diag[c]
			}
		}
		ix.setFloats(n, i, out)
	}
	switch f.producer.GetOpType() {
	case "Conv":
		scaleRows(f.producer, 1)
		if onnxio.Input(f.producer, 2) != "" {
			scaleRows(f.producer, 2)
		}
	case "BatchNormalization":
		scaleRows(f.producer, 1) // scale
		scaleRows(f.producer, 2) // shift
	}
	// V is [r, C, 1, 1]: column c is every C-th value from c.
	v, _, _ := ix.floats(f.v.GetInput()[1])
	out := make([]float32, len(v))
	for i := range v {
		out[i] = v[i] / f.diag[i%C]
	}
	ix.setFloats(f.v, 1, out)
	x := f.d.GetInput()[0]
	for i, in := range f.add.GetInput() {
		if in == f.d.GetOutput()[0] {
			f.add.Input[i] = x
		}
	}
}
