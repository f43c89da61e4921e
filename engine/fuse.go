package engine

import "math"

// fuse rewrites the step list before planning:
//   - a BatchNormalization whose input is the only use of a Conv output,
//     with constant weights on both, is folded into the Conv's weight and
//     bias (exact algebra, done once at Compile);
//   - unless the program keeps activations for backward, a Relu or Clip
//     whose input is the only use of a Conv output runs inside the Conv,
//     on each image's output while it is still in cache.
func (p *Program) fuse(keepAll bool) {
	uses := map[*value]int{}
	for _, st := range p.steps {
		for _, v := range st.in {
			if v != nil {
				uses[v]++
			}
		}
	}
	for _, v := range p.outputs {
		uses[v] += 2
	}
	for _, v := range p.observed {
		uses[v] += 2
	}
	steps := p.steps
	var out []*Step
	for i := 0; i < len(steps); i++ {
		st := steps[i]
		out = append(out, st)
		conv, ok := st.Op.(*ConvOp)
		if !ok {
			continue
		}
		feeds := func() *Step {
			if i+1 < len(steps) && steps[i+1].in[0] == st.out[0] && uses[st.out[0]] == 1 {
				return steps[i+1]
			}
			return nil
		}
		if next := feeds(); next != nil {
			if bn, ok := next.Op.(*BatchNormOp); ok && p.foldBN(st, conv, next, bn) {
				i++
			}
		}
		if next := feeds(); next != nil && !keepAll {
			if u, ok := next.Op.(*UnaryOp); ok && (u.Kind == uRelu || (u.Kind == uClip && !u.clipInputs)) {
				conv.Act = u
				st.out[0] = next.out[0]
				i++
			}
		}
	}
	p.steps = out
	for _, v := range p.values {
		if v.konst == nil && !v.param {
			v.def = -1
		}
	}
	for si, st := range p.steps {
		for _, v := range st.out {
			v.def = si
		}
	}
}

// foldBN folds the BatchNormalization step bnSt into the Conv step st when
// the convolution's weight and bias and all BN inputs but X are constants
// that nothing else reads; it reports whether it did.
func (p *Program) foldBN(st *Step, conv *ConvOp, bnSt *Step, bn *BatchNormOp) bool {
	w := st.in[1]
	if w.konst == nil {
		return false
	}
	var bias *value
	if len(st.in) > 2 {
		bias = st.in[2]
	}
	if bias != nil && bias.konst == nil {
		return false
	}
	for _, v := range bnSt.in[1:5] {
		if v == nil || v.konst == nil {
			return false
		}
	}
	gamma, beta, mean, vr := bnSt.in[1].konst.F, bnSt.in[2].konst.F, bnSt.in[3].konst.F, bnSt.in[4].konst.F
	per := sizeOf(w.shape) / conv.M
	nw := make([]float32, len(w.konst.F))
	nb := make([]float32, conv.M)
	for o := 0; o < conv.M; o++ {
		a := gamma[o] / float32(math.Sqrt(float64(vr[o]+bn.Eps)))
		for j := 0; j < per; j++ {
			nw[o*per+j] = w.konst.F[o*per+j] * a
		}
		var b0 float32
		if bias != nil {
			b0 = bias.konst.F[o]
		}
		nb[o] = (b0-mean[o])*a + beta[o]
	}
	wv := &value{id: len(p.values), name: w.name + "/bn_folded", shape: w.shape, dtype: Float32, def: -1, lastUse: -1}
	wv.konst = &Tensor{Shape: w.shape, F: nw}
	wv.t = wv.konst
	bv := &value{id: len(p.values) + 1, name: bnSt.Node.Name + "/bn_folded_bias", shape: []int{conv.M}, dtype: Float32, def: -1, lastUse: -1}
	bv.konst = &Tensor{Shape: []int{conv.M}, F: nb}
	bv.t = bv.konst
	p.values = append(p.values, wv, bv)
	st.in = []*value{st.in[0], wv, bv}
	st.out[0] = bnSt.out[0]
	return true
}
