package kernels

import "fmt"

// colBudget is the most values Conv2D keeps in its column buffer; larger
// batches are processed in chunks of images.
const colBudget = 1 << 22

// imcolTask runs Im2col or Col2im over the images of one chunk.
type imcolTask struct {
	g       ConvGeom
	im, col []float32
	toCol   bool
}

func (t *imcolTask) run(lo, hi, tid int) {
	g := &t.g
	plane, cs := g.C*g.H*g.W, g.C*g.KH*g.KW*g.OH*g.OW
	for j := lo; j < hi; j++ {
		if t.toCol {
			Im2col(*g, t.im[j*plane:(j+1)*plane], t.col[j*cs:(j+1)*cs])
		} else {
			Col2im(*g, t.col[j*cs:(j+1)*cs], t.im[j*plane:(j+1)*plane])
		}
	}
}

// pointwise reports whether g is a 1x1 convolution without stride or
// padding, which is a plain GEMM per image.
func (g *ConvGeom) pointwise() bool {
	return g.KH == 1 && g.KW == 1 && g.Strides == [2]int{1, 1} && g.Pads == [4]int{}
}

// convChunk returns how many images fit in the column buffer.
func (ctx *Context) convChunk(g *ConvGeom, n int) int {
	budget := colBudget
	if ctx.colLimit > 0 {
		budget = ctx.colLimit
	}
	cs := g.C * g.KH * g.KW * g.OH * g.OW
	return max(1, min(n, budget/max(cs, 1)))
}

func (ctx *Context) imcol(g *ConvGeom, im, col []float32, count int, toCol bool) {
	t := &ctx.imcol1
	*t = imcolTask{g: *g, im: im, col: col, toCol: toCol}
	ctx.parallel(t, count, ctx.threads)
	*t = imcolTask{}
}

func checkConv(g *ConvGeom, n, cout int, in, weight, out []float32) {
	if len(in) < n*g.C*g.H*g.W || len(weight) < cout*g.C*g.KH*g.KW || len(out) < n*cout*g.OH*g.OW {
		panic(fmt.Sprintf("kernels: Conv2D buffers too small (in %d, weight %d, out %d) for n=%d cout=%d %+v", len(in), len(weight), len(out), n, cout, *g))
	}
}

// Conv2D computes a convolution with one group of n NCHW images (in:
// n*C*H*W values) with weight [cout, C, KH, KW] into out (n*cout*OH*OW),
// then applies ep (RowBias is the per-output-channel bias; Clip gives ReLU
// or ReLU6). 1x1 convolutions without stride or padding run as one batched
// GEMM; others through Im2col in chunks of images. It does not allocate
// once the Context's buffers have grown to the problem.
func (ctx *Context) Conv2D(g ConvGeom, n, cout int, in, weight, out []float32, ep Epilogue) {
	checkConv(&g, n, cout, in, weight, out)
	hw := g.OH * g.OW
	if n == 0 || cout == 0 {
		return
	}
	if g.pointwise() {
		ctx.SgemmBatchedEx(false, false, cout, hw, g.C, 1, weight, g.C, 0, in, hw, g.C*hw, 0, out, hw, cout*hw, n, ep)
		return
	}
	kdim := g.C * g.KH * g.KW
	chunk := ctx.convChunk(&g, n)
	ctx.col = grow(ctx.col, chunk*kdim*hw)
	plane := g.C * g.H * g.W
	for i0 := 0; i0 < n; i0 += chunk {
		cnt := min(chunk, n-i0)
		ctx.imcol(&g, in[i0*plane:], ctx.col, cnt, true)
		ctx.SgemmBatchedEx(false, false, cout, hw, kdim, 1, weight, kdim, 0, ctx.col, hw, kdim*hw, 0, out[i0*cout*hw:], hw, cout*hw, cnt, ep)
	}
}

// Conv2DBackward computes the gradients of Conv2D (without its epilogue;
// apply ReluBackward first) given dout (n*cout*OH*OW): din (n*C*H*W),
// dweight ([cout, C, KH, KW]) and dbias (cout). Any of din, dweight and
// dbias may be nil to skip it; the others are overwritten. in is needed
// only for dweight and weight only for din.
func (ctx *Context) Conv2DBackward(g ConvGeom, n, cout int, in, weight, dout, din, dweight, dbias []float32) {
	hw := g.OH * g.OW
	kdim := g.C * g.KH * g.KW
	plane := g.C * g.H * g.W
	if len(dout) < n*cout*hw || (din != nil && (len(din) < n*plane || len(weight) < cout*kdim)) ||
		(dweight != nil && (len(dweight) < cout*kdim || len(in) < n*plane)) || (dbias != nil && len(dbias) < cout) {
		panic(fmt.Sprintf("kernels: Conv2DBackward buffers too small for n=%d cout=%d %+v", n, cout, g))
	}
	if dbias != nil {
		SumChannels(dbias, dout, n, cout, hw)
	}
	if n == 0 {
		if dweight != nil {
			clear(dweight[:cout*kdim])
		}
		return
	}
	if g.pointwise() {
		if dweight != nil {
			ctx.SgemmBatched(false, true, cout, g.C, hw, 1, dout, hw, cout*hw, in, hw, plane, 0, dweight, g.C, 0, n)
		}
		if din != nil {
			ctx.SgemmBatched(true, false, g.C, hw, cout, 1, weight, g.C, 0, dout, hw, cout*hw, 0, din, hw, plane, n)
		}
		return
	}
	chunk := ctx.convChunk(&g, n)
	ctx.col = grow(ctx.col, chunk*kdim*hw)
	for i0 := 0; i0 < n; i0 += chunk {
		cnt := min(chunk, n-i0)
		if dweight != nil {
			ctx.imcol(&g, in[i0*plane:], ctx.col, cnt, true)
			beta := float32(1)
			if i0 == 0 {
				beta = 0
			}
			ctx.SgemmBatched(false, true, cout, kdim, hw, 1, dout[i0*cout*hw:], hw, cout*hw, ctx.col, hw, kdim*hw, beta, dweight, kdim, 0, cnt)
		}
		if din != nil {
			ctx.SgemmBatched(true, false, kdim, hw, cout, 1, weight, kdim, 0, dout[i0*cout*hw:], hw, cout*hw, 0, ctx.col, hw, kdim*hw, cnt)
			ctx.imcol(&g, din[i0*plane:], ctx.col, cnt, false)
		}
	}
}
