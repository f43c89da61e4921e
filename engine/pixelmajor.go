package engine

import "github.com/lprconv/lprconv/engine/kernels"

// packPixelMajor gives every group-1 pointwise convolution that
// kernels.PixelMajorPays selects, whose weight is a constant, that weight
// packed for kernels.PointwisePixelMajor (once per model: programs
// compiled to share another's weights reuse its packs). Trainable weights
// are not constants and keep the channel-major path.
func (p *Program) packPixelMajor() {
	for _, st := range p.steps {
		op, ok := st.Op.(*ConvOp)
		if !ok || op.Kind != convPointwise || op.Group != 1 || op.Chunk > 0 || op.AddRes ||
			!kernels.PixelMajorPays(op.Geom.OH*op.Geom.OW, op.M) {
			continue
		}
		w := st.in[1]
		if w == nil || w.konst == nil || len(w.konst.F) != op.M*op.C {
			continue
		}
		pw := p.share.packedWeights(w.name)
		if pw == nil {
			pw = kernels.PackWeightsT(w.konst.F, op.M, op.C)
		}
		p.packedW[w.name] = pw
		op.wt = pw
	}
}

// packedWeights returns p's (nil-safe) pixel-major pack of weight name.
func (p *Program) packedWeights(name string) *kernels.PackedWeights {
	if p == nil {
		return nil
	}
	return p.packedW[name]
}
