package engine

import (
	"math"
	"slices"
)

// fuse rewrites the step list before planning:
//   - a BatchNormalization whose input is the only use of a Conv output,
//     with constant weights on both, is folded into the Conv's weight and
//     bias (exact algebra, done once at Compile);
//   - unless the program keeps activations for backward, a Relu or Clip
//     whose input is the only use of a Conv output runs inside the Conv,
//     on each image's output while it is still in cache;
//   - unless the program keeps activations for backward, an Add of a
//     group-1 pointwise Conv output and another tensor of the same shape
//     (an LPR module's second factor and its residual) runs inside the
//     Conv (see fuseResidualAdds).
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
	if !keepAll {
		out = fuseResidualAdds(out, uses)
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
	wName, bName := w.name+"/bn_folded", bnSt.Node.Name+"/bn_folded_bias"
	nw, nb := p.share.folded(wName, len(w.konst.F)), p.share.folded(bName, conv.M)
	if nw == nil || nb == nil {
		nw, nb = make([]float32, len(w.konst.F)), make([]float32, conv.M)
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
	}
	p.bnFolded[wName], p.bnFolded[bName] = &Tensor{Shape: w.shape, F: nw}, &Tensor{Shape: []int{conv.M}, F: nb}
	wv := &value{id: len(p.values), name: wName, shape: w.shape, dtype: Float32, def: -1, lastUse: -1}
	wv.konst = &Tensor{Shape: w.shape, F: nw}
	wv.t = wv.konst
	bv := &value{id: len(p.values) + 1, name: bName, shape: []int{conv.M}, dtype: Float32, def: -1, lastUse: -1}
	bv.konst = &Tensor{Shape: []int{conv.M}, F: nb}
	bv.t = bv.konst
	p.values = append(p.values, wv, bv)
	st.in = []*value{st.in[0], wv, bv}
	st.out[0] = bnSt.out[0]
	return true
}

// fuseResidualAdds rewrites y = Add(t, r) (either order), where t is the
// only use of the output of a group-1 pointwise Conv without fused
// activation and r has t's shape, into one Conv step at the Add's place
// that writes r into y and accumulates the GEMM into it (beta = 1). When r
// is the only use of the output of a group = C = M Conv without
// activation (the diag or depthwise residual of an LPR module), that Conv
// is absorbed too and writes its result straight into y. A Relu or Clip
// that is the only reader of y and follows the Add runs in the epilogue.
// Every step the fused step replaces reads only values defined before the
// Add, so running it at the Add's place keeps the order valid.
func fuseResidualAdds(steps []*Step, uses map[*value]int) []*Step {
	def := map[*value]int{}
	for i, st := range steps {
		for _, v := range st.out {
			def[v] = i
		}
	}
	removed := make([]bool, len(steps))
	for j, st := range steps {
		if removed[j] {
			continue
		}
		add, ok := st.Op.(*BinaryOp)
		if !ok || add.Kind != bAdd || len(st.in) != 2 || len(st.out) != 1 {
			continue
		}
		y := st.out[0]
		if st.in[0] == nil || st.in[1] == nil || st.in[0] == st.in[1] || y.dtype != Float32 {
			continue
		}
		for side := 0; side < 2; side++ {
			t, r := st.in[side], st.in[1-side]
			i, ok := def[t]
			if !ok || removed[i] || uses[t] != 1 || t.dtype != Float32 || r.dtype != Float32 ||
				!slices.Equal(t.shape, y.shape) || !slices.Equal(r.shape, y.shape) {
				continue
			}
			cst := steps[i]
			conv, ok := cst.Op.(*ConvOp)
			if !ok || conv.Kind != convPointwise || conv.Group != 1 || conv.Act != nil || conv.AddRes || cst.out[0] != t {
				continue
			}
			fused := *conv
			fused.AddRes = true
			ins := []*value{cst.in[0], cst.in[1], nil}
			if len(cst.in) > 2 {
				ins[2] = cst.in[2]
			}
			if k, ok := def[r]; ok && !removed[k] && uses[r] == 1 {
				rst := steps[k]
				if rc, ok := rst.Op.(*ConvOp); ok && rc.Act == nil && !rc.AddRes && rst.out[0] == r &&
					rc.M == rc.C && rc.Group == rc.C && (rc.Kind == convDepthwise || rc.channelScale()) {
					fused.Res = rc
					ins = append(ins, rst.in[0], rst.in[1], nil)
					if len(rst.in) > 2 {
						ins[5] = rst.in[2]
					}
					removed[k] = true
				}
			}
			if fused.Res == nil {
				ins = append(ins, r)
			}
			nst := &Step{Node: cst.Node, Index: cst.Index, Op: &fused, in: ins, out: []*value{y}}
			removed[i] = true
			if j+1 < len(steps) && uses[y] == 1 && len(steps[j+1].in) > 0 && steps[j+1].in[0] == y {
				if u, ok := steps[j+1].Op.(*UnaryOp); ok && (u.Kind == uRelu || (u.Kind == uClip && !u.clipInputs)) {
					fused.Act = u
					nst.out[0] = steps[j+1].out[0]
					removed[j+1] = true
				}
			}
			steps[j] = nst
			break
		}
	}
	out := steps[:0]
	for i, st := range steps {
		if !removed[i] {
			out = append(out, st)
		}
	}
	return out
}
