package engine

import (
	"fmt"
	"math"
)

// BatchNormOp is an inference-mode BatchNormalization over axis 1.
type BatchNormOp struct {
	N, C, Inner int
	Eps         float32
	scale, sh   []float32
}

func buildBatchNorm(b *nodeBuild) (Op, error) {
	x, err := b.need(0)
	if err != nil {
		return nil, err
	}
	if !x.dtype.IsFloat() || len(x.shape) < 2 {
		return nil, fmt.Errorf("input must be a float tensor of rank >= 2, got %s %v", x.dtype, x.shape)
	}
	if b.attrInt("training_mode", 0) != 0 {
		return nil, fmt.Errorf("training_mode=1 is not supported (inference only)")
	}
	if b.has("spatial") && b.attrInt("spatial", 1) != 1 {
		return nil, fmt.Errorf("spatial=0 is not supported")
	}
	if b.has("is_test") && b.attrInt("is_test", 0) != 1 {
		return nil, fmt.Errorf("is_test=0 (training) is not supported")
	}
	if len(b.node.Output) > 1 {
		for _, o := range b.node.Output[1:] {
			if o != "" {
				return nil, fmt.Errorf("running mean/var outputs are training-mode outputs; not supported")
			}
		}
	}
	c := x.shape[1]
	for i := 1; i <= 4; i++ {
		v, err := b.need(i)
		if err != nil {
			return nil, err
		}
		if !v.dtype.IsFloat() || len(v.shape) != 1 || v.shape[0] != c {
			return nil, fmt.Errorf("input %d has shape %v; want [%d]", i, v.shape, c)
		}
	}
	op := &BatchNormOp{N: x.shape[0], C: c, Inner: sizeOf(x.shape[2:]), Eps: b.attrFloat("epsilon", 1e-5),
		scale: make([]float32, c), sh: make([]float32, c)}
	b.setOut(0, x.shape, Float32)
	for i := 1; i < len(b.outs); i++ {
		b.setOut(i, []int{c}, Float32)
	}
	return op, nil
}

// Forward computes Y = (X - mean) * scale / sqrt(var + eps) + B.
func (op *BatchNormOp) Forward(c *Ctx, in, out []*Tensor) error {
	gamma, beta, mean, vr := in[1].F, in[2].F, in[3].F, in[4].F
	for ch := 0; ch < op.C; ch++ {
		a := gamma[ch] / float32(math.Sqrt(float64(vr[ch]+op.Eps)))
		op.scale[ch] = a
		op.sh[ch] = beta[ch] - mean[ch]*a
	}
	x, y := in[0].F, out[0].F
	for i := 0; i < op.N; i++ {
		for ch := 0; ch < op.C; ch++ {
			a, s := op.scale[ch], op.sh[ch]
			base := (i*op.C + ch) * op.Inner
			xr, yr := x[base:base+op.Inner], y[base:base+op.Inner]
			for j, v := range xr {
				yr[j] = v*a + s
			}
		}
	}
	return nil
}
