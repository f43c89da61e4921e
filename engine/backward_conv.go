package engine

import (
	"math"

	"github.com/lprconv/lprconv/engine/kernels"
)

// gradF returns the float storage of gradient slot i, or nil when no
// gradient is wanted there.
func gradF(d []*Tensor, i int) []float32 {
	if i < len(d) && d[i] != nil {
		return d[i].F
	}
	return nil
}

// addTo adds src into dst element-wise.
func addTo(dst, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] += v
	}
}

// maxColFloats bounds the im2col buffer of a batched convolution weight
// gradient; larger batches are processed in chunks of images.
const maxColFloats = 1 << 22

// Backward adds the gradients of a convolution: the input gradient
// Wᵀ·dY folded back by Col2im (no im2col for 1x1 kernels, the depthwise
// kernel for depthwise convolutions), the weight gradient dY·colᵀ summed
// over the batch, and the bias gradient (dY summed per channel). A fused
// Relu or Clip is undone first by masking dY where the output sits at a
// bound.
func (op *ConvOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	return op.backwardFresh(c, in, out, dOut, dIn, nil)
}

// overwrites reports that the input gradient can be written outright.
func (op *ConvOp) overwrites(i int) bool { return i == 0 }

// backwardFresh is Backward that writes dIn[0] outright when fresh[0].
func (op *ConvOp) backwardFresh(c *Ctx, in, out, dOut, dIn []*Tensor, fresh []bool) error {
	if dOut[0] == nil {
		return nil
	}
	overwriteX := isFresh(fresh, 0)
	dx, dw, db := gradF(dIn, 0), gradF(dIn, 1), gradF(dIn, 2)
	if dx == nil && dw == nil && db == nil {
		return nil
	}
	x, w := in[0].F, in[1].F
	g := op.Geom
	ohw, hw := g.OH*g.OW, g.H*g.W
	cg, mg := op.C/op.Group, op.M/op.Group
	kk := cg * g.KH * g.KW

	// scratch layout: [masked dY][kind-specific buffers]
	nDy := 0
	if op.Act != nil {
		nDy = len(dOut[0].F)
	}
	chunk := 0 // images per im2col batch (general convolutions)
	need := 0
	switch {
	case op.Kind == convDepthwise:
		if dx != nil && !overwriteX {
			need += len(x)
		}
		if dw != nil {
			need += len(w)
		}
		if db != nil {
			need += op.C
		}
	case op.Kind == convGeneral:
		chunk = max(1, min(op.N, maxColFloats/max(kk*ohw, 1)))
		if op.Group > 1 {
			chunk = 1
		}
		need = chunk * kk * ohw
		if dx != nil {
			need = max(need, kk*ohw) + cg*hw
		}
	}
	scratch := c.Scratch(nDy + need)
	dy := dOut[0].F
	if op.Act != nil {
		dy = scratch[:nDy]
		op.maskActivation(out[0].F, dOut[0].F, dy)
	}
	buf := scratch[nDy:]

	if db != nil && op.Kind != convDepthwise {
		for i := 0; i < op.N; i++ {
			for ch := 0; ch < op.M; ch++ {
				db[ch] += sum4(dy[(i*op.M+ch)*ohw : (i*op.M+ch+1)*ohw])
			}
		}
	}
	switch {
	case op.Kind == convDepthwise:
		var tdx, tdw, tdb []float32
		if dx != nil && overwriteX {
			tdx = dx
		} else if dx != nil {
			tdx = buf[:len(x)]
			buf = buf[len(x):]
		}
		if dw != nil {
			tdw = buf[:len(w)]
			buf = buf[len(w):]
		}
		if db != nil {
			tdb = buf[:op.C]
		}
		kernels.DepthwiseConv2DBackward(c.K, g, op.N, x, w, dy, tdx, tdw, tdb)
		if dx != nil && !overwriteX {
			addTo(dx, tdx)
		}
		if dw != nil {
			addTo(dw, tdw)
		}
		if db != nil {
			addTo(db, tdb)
		}
	case op.Kind == convPointwise && op.Group == 1:
		if dw != nil {
			c.K.SgemmBatched(false, true, op.M, op.C, hw, 1, dy, hw, op.M*hw, x, hw, op.C*hw, 1, dw, op.C, 0, op.N)
		}
		if dx != nil {
			c.K.SgemmBatched(true, false, op.C, hw, op.M, 1, w, op.C, 0, dy, hw, op.M*hw, betaFor(overwriteX), dx, hw, op.C*hw, op.N)
		}
	case op.Kind == convPointwise && cg == 1 && mg == 1: // per-channel scale (diag residual)
		for i := 0; i < op.N; i++ {
			for ch := 0; ch < op.C; ch++ {
				o := (i*op.C + ch) * hw
				xr, gr := x[o:o+hw], dy[o:o+hw]
				if dw != nil {
					var s float32
					for j, g := range gr {
						s += g * xr[j]
					}
					dw[ch] += s
				}
				if dx != nil && overwriteX {
					wv, dr := w[ch], dx[o:o+hw]
					for j, g := range gr {
						dr[j] = wv * g
					}
				} else if dx != nil {
					wv, dr := w[ch], dx[o:o+hw]
					for j, g := range gr {
						dr[j] += wv * g
					}
				}
			}
		}
	case op.Kind == convPointwise: // grouped 1x1: one GEMM per image and group
		for i := 0; i < op.N; i++ {
			for gi := 0; gi < op.Group; gi++ {
				xo, yo, wo := (i*op.C+gi*cg)*hw, (i*op.M+gi*mg)*ohw, gi*mg*kk
				if dw != nil {
					c.K.Sgemm(false, true, mg, cg, hw, 1, dy[yo:], hw, x[xo:], hw, 1, dw[wo:], cg)
				}
				if dx != nil {
					c.K.Sgemm(true, false, cg, hw, mg, 1, w[wo:], cg, dy[yo:], hw, betaFor(overwriteX), dx[xo:], hw)
				}
			}
		}
	case op.Group == 1:
		op.generalBackward(c, x, w, dy, dx, dw, buf, chunk, overwriteX)
	default:
		col := buf[:kk*ohw]
		tmp := buf[kk*ohw:]
		for i := 0; i < op.N; i++ {
			for gi := 0; gi < op.Group; gi++ {
				xo, yo, wo := (i*op.C+gi*cg)*hw, (i*op.M+gi*mg)*ohw, gi*mg*kk
				if dw != nil {
					kernels.Im2col(g, x[xo:xo+cg*hw], col)
					c.K.Sgemm(false, true, mg, kk, ohw, 1, dy[yo:], ohw, col, ohw, 1, dw[wo:], kk)
				}
				if dx != nil {
					c.K.Sgemm(true, false, kk, ohw, mg, 1, w[wo:], kk, dy[yo:], ohw, 0, col, ohw)
					if overwriteX {
						kernels.Col2im(g, col, dx[xo:xo+cg*hw])
					} else {
						kernels.Col2im(g, col, tmp[:cg*hw])
						addTo(dx[xo:xo+cg*hw], tmp[:cg*hw])
					}
				}
			}
		}
	}
	return nil
}

// betaFor is the GEMM beta that overwrites (0) or accumulates into (1)
// the output.
func betaFor(overwrite bool) float32 {
	if overwrite {
		return 0
	}
	return 1
}

// sum4 returns the sum of x with four independent accumulators.
func sum4(x []float32) float32 {
	var s0, s1, s2, s3 float32
	j := 0
	for ; j+4 <= len(x); j += 4 {
		q := x[j : j+4 : j+4]
		s0 += q[0]
		s1 += q[1]
		s2 += q[2]
		s3 += q[3]
	}
	for ; j < len(x); j++ {
		s0 += x[j]
	}
	return (s0 + s1) + (s2 + s3)
}

// generalBackward handles an ungrouped convolution through im2col, chunk
// images at a time: the weight gradient is one GEMM of depth
// chunk*OH*OW per chunk, and the input gradient one wide GEMM Wᵀ·dY per
// chunk followed by Col2im per image.
func (op *ConvOp) generalBackward(c *Ctx, x, w, dy, dx, dw, buf []float32, chunk int, overwriteX bool) {
	g := op.Geom
	ohw, hw := g.OH*g.OW, g.H*g.W
	kk := op.C * g.KH * g.KW
	col := buf[:chunk*kk*ohw]
	var tmp []float32
	if dx != nil {
		tmp = buf[max(chunk*kk*ohw, kk*ohw):][:op.C*hw]
	}
	for i0 := 0; i0 < op.N; i0 += chunk {
		n := min(chunk, op.N-i0)
		dyc := dy[i0*op.M*ohw:]
		if dw != nil {
			for i := 0; i < n; i++ {
				kernels.Im2col(g, x[(i0+i)*op.C*hw:(i0+i+1)*op.C*hw], col[i*kk*ohw:(i+1)*kk*ohw])
			}
			c.K.SgemmBatched(false, true, op.M, kk, ohw, 1, dyc, ohw, op.M*ohw, col, ohw, kk*ohw, 1, dw, kk, 0, n)
		}
		if dx != nil {
			c.K.SgemmBatched(true, false, kk, ohw, op.M, 1, w, kk, 0, dyc, ohw, op.M*ohw, 0, col, ohw, kk*ohw, n)
			for i := 0; i < n; i++ {
				dxi := dx[(i0+i)*op.C*hw : (i0+i+1)*op.C*hw]
				if overwriteX {
					kernels.Col2im(g, col[i*kk*ohw:(i+1)*kk*ohw], dxi)
					continue
				}
				kernels.Col2im(g, col[i*kk*ohw:(i+1)*kk*ohw], tmp)
				addTo(dxi, tmp)
			}
		}
	}
}

// maskActivation writes into dst the gradient dy of a fused activation's
// output y, zero where the activation clamped (Relu: y <= 0; Clip: y at a
// bound it reached by clamping).
func (op *ConvOp) maskActivation(y, dy, dst []float32) {
	if op.Act.Kind == uRelu {
		for i, v := range y {
			if v > 0 {
				dst[i] = dy[i]
			} else {
				dst[i] = 0
			}
		}
		return
	}
	lo, hi := op.Act.Lo, op.Act.Hi
	for i, v := range y {
		if v > lo && v < hi {
			dst[i] = dy[i]
		} else {
			dst[i] = 0
		}
	}
}

// Backward adds the gradients of inference-mode batch normalization
// y = (x - mean)·gamma/sqrt(var+eps) + beta with respect to x, gamma, beta,
// mean and var (statistics are inputs, not batch statistics), channels
// split over the program's threads.
func (op *BatchNormOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	return op.backwardFresh(c, in, out, dOut, dIn, nil)
}

// overwrites reports that the input gradient can be written outright.
func (op *BatchNormOp) overwrites(i int) bool { return i == 0 }

// backwardFresh is Backward that writes dIn[0] outright when fresh[0].
func (op *BatchNormOp) backwardFresh(c *Ctx, in, out, dOut, dIn []*Tensor, fresh []bool) error {
	if dOut[0] == nil {
		return nil
	}
	w := &c.bw
	*w = bwWork{loop: bwBatchNorm, bn: op, dx: gradF(dIn, 0), dy: dOut[0].F, x: in[0].F, overwrite: isFresh(fresh, 0),
		params: [5][]float32{in[1].F, in[3].F, in[4].F, gradF(dIn, 1), gradF(dIn, 2)},
		dstat:  [2][]float32{gradF(dIn, 3), gradF(dIn, 4)}}
	c.parallelFor(op.C, op.N*op.Inner, w)
	*w = bwWork{}
	return nil
}

// Backward adds the pooling gradient: MaxPool routes each output's
// gradient to the first maximal input of its window (as Forward picks it),
// AveragePool spreads it evenly over the inputs its window averaged.
// Planes are split over the program's threads.
func (op *PoolOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	dx := gradF(dIn, 0)
	if dOut[0] == nil || dx == nil {
		return nil
	}
	w := &c.bw
	*w = bwWork{loop: bwPool, pool: op, dx: dx, dy: dOut[0].F, x: in[0].F, y: out[0].F}
	c.parallelFor(op.Planes, op.Geom.OH*op.Geom.OW*op.Geom.KH*op.Geom.KW, w)
	*w = bwWork{}
	return nil
}

// poolBackward adds the gradients of planes [lo, hi) into dx, given the
// input x and output y of Forward.
func (op *PoolOp) poolBackward(x, y, dy, dx []float32, lo, hi int) {
	g := op.Geom
	hw, ohw := g.H*g.W, g.OH*g.OW
	sh, sw, dh, dwl := g.Strides[0], g.Strides[1], g.Dilations[0], g.Dilations[1]
	for p := lo; p < hi; p++ {
		xp, dxp, yp, dyp := x[p*hw:(p+1)*hw], dx[p*hw:(p+1)*hw], y[p*ohw:(p+1)*ohw], dy[p*ohw:(p+1)*ohw]
		for oy := 0; oy < g.OH; oy++ {
			y0 := oy*sh - g.Pads[0]
			for ox := 0; ox < g.OW; ox++ {
				x0 := ox*sw - g.Pads[1]
				gv := dyp[oy*g.OW+ox]
				if op.Max && dh == 1 && dwl == 1 {
					// the first input equal to the window's maximum (the
					// output), which is the one Forward kept
					m, at := yp[oy*g.OW+ox], -1
					xlo, xhi := max(x0, 0), min(x0+g.KW, g.W)
				scan:
					for iy := max(y0, 0); iy < min(y0+g.KH, g.H); iy++ {
						for j, v := range xp[iy*g.W+xlo : iy*g.W+max(xhi, xlo)] {
							if v == m {
								at = iy*g.W + xlo + j
								break scan
							}
						}
					}
					if at >= 0 && !math.IsInf(float64(m), -1) {
						dxp[at] += gv
					}
					continue
				}
				if op.Max {
					m, at := float32(math.Inf(-1)), -1
					for ky := 0; ky < g.KH; ky++ {
						iy := y0 + ky*dh
						if iy < 0 || iy >= g.H {
							continue
						}
						row := xp[iy*g.W : (iy+1)*g.W]
						for kx := 0; kx < g.KW; kx++ {
							ix := x0 + kx*dwl
							if ix >= 0 && ix < g.W && row[ix] > m {
								m, at = row[ix], iy*g.W+ix
							}
						}
					}
					if at >= 0 {
						dxp[at] += gv
					}
					continue
				}
				ylo, yhi := max(y0, 0), min(y0+g.KH, g.H)
				xlo, xhi := max(x0, 0), min(x0+g.KW, g.W)
				if cnt := op.avgCount(y0, x0, ylo, yhi, xlo, xhi); cnt > 0 {
					gv /= float32(cnt)
				}
				for iy := ylo; iy < yhi; iy++ {
					row := dxp[iy*g.W+xlo : iy*g.W+max(xhi, xlo)]
					for j := range row {
						row[j] += gv
					}
				}
			}
		}
	}
}

// Backward adds the global pooling gradient: the mean's gradient spread
// over each plane, or the max's routed to the plane's first maximum.
func (op *GlobalPoolOp) Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error {
	return op.backwardFresh(c, in, out, dOut, dIn, nil)
}

// overwrites reports that the input gradient can be written outright.
func (op *GlobalPoolOp) overwrites(i int) bool { return i == 0 }

// backwardFresh is Backward that writes dIn[0] outright when fresh[0].
func (op *GlobalPoolOp) backwardFresh(c *Ctx, in, out, dOut, dIn []*Tensor, fresh []bool) error {
	dx := gradF(dIn, 0)
	if dOut[0] == nil || dx == nil {
		return nil
	}
	if isFresh(fresh, 0) {
		clear(dx)
	}
	x, dy := in[0].F, dOut[0].F
	for p := 0; p < op.Planes; p++ {
		row := dx[p*op.Inner : (p+1)*op.Inner]
		if op.Max {
			m, at := float32(math.Inf(-1)), -1
			for j, v := range x[p*op.Inner : (p+1)*op.Inner] {
				if v > m {
					m, at = v, j
				}
			}
			if at >= 0 {
				row[at] += dy[p]
			}
			continue
		}
		gv := dy[p] / float32(op.Inner)
		for j := range row {
			row[j] += gv
		}
	}
	return nil
}
