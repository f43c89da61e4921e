package kernels

import "fmt"

// dwParallelMinMACs is the smallest depthwise convolution (in
// multiply-adds) worth splitting over threads (about 10 µs of work).
const dwParallelMinMACs = 1 << 17

// dwTask runs the forward depthwise convolution over planes (image, channel).
type dwTask struct {
	ctx                   *Context
	g                     ConvGeom
	n                     int // images
	in, weight, bias, out []float32
	clip                  bool // clamp the output to [lo, hi]
	lo, hi                float32
	flat                  []uint16 // masks of the flat kernel, or nil (dwFlatMasks)
	// distances between the planes of consecutive images of a channel and
	// of consecutive channels of an image (planeStrides)
	inImg, inCh, outImg, outCh int
}

// dwBackTask runs the depthwise backward pass over channels.
type dwBackTask struct {
	ctx                 *Context
	g                   ConvGeom
	n                   int
	in, weight, dout    []float32
	din, dweight, dbias []float32
}

// singleContext is used by kernels called with a nil Context.
func orSingle(ctx *Context) *Context {
	if ctx == nil {
		return NewContext(1)
	}
	return ctx
}

// DepthwiseConv2D computes a depthwise convolution (ONNX Conv with
// group = C and one output channel per group) of n NCHW images: in holds
// n*C*H*W values, weight C*KH*KW ([C,1,KH,KW]), bias C values or nil, and out
// receives n*C*OH*OW values. ctx may be nil (single thread).
func DepthwiseConv2D(ctx *Context, g ConvGeom, n int, in, weight, bias, out []float32) {
	DepthwiseConv2DEx(ctx, g, n, in, weight, out, Epilogue{RowBias: bias})
}

// DepthwiseConv2DEx is DepthwiseConv2D with a fused epilogue: ep.RowBias
// is the per-channel bias (or nil) and ep.Clip clamps the output (ReLU,
// ReLU6); ep.ColBias must be nil.
func DepthwiseConv2DEx(ctx *Context, g ConvGeom, n int, in, weight, out []float32, ep Epilogue) {
	depthwiseForward(ctx, g, n, in, weight, out, ep, false, false)
}

// depthwiseForward is DepthwiseConv2DLayout.
func depthwiseForward(ctx *Context, g ConvGeom, n int, in, weight, out []float32, ep Epilogue, inCN, outCN bool) {
	bias := ep.RowBias
	if ep.ColBias != nil {
		panic("kernels: DepthwiseConv2DEx does not take a column bias")
	}
	plane, oplane := g.H*g.W, g.OH*g.OW
	if len(in) < n*g.C*plane || len(weight) < g.C*g.KH*g.KW || len(out) < n*g.C*oplane || (bias != nil && len(bias) < g.C) {
		panic(fmt.Sprintf("kernels: DepthwiseConv2D buffers too small (in %d, weight %d, bias %d, out %d) for n=%d %+v", len(in), len(weight), len(bias), len(out), n, g))
	}
	ctx = orSingle(ctx)
	lo, hi := ep.bounds()
	switch {
	case !inCN && !outCN:
		if ctx.dwTiny(&g, n, in, weight, bias, out, lo, hi) {
			return
		}
	case inCN && outCN:
		if ctx.dwTinyCN(&g, n, in, weight, bias, out, lo, hi) {
			return
		}
	}
	flat := ctx.dwFlatMasks(&g)
	t := &ctx.dw
	*t = dwTask{ctx: ctx, g: g, n: n, in: in, weight: weight, bias: bias, out: out, clip: ep.Clip, lo: ep.Min, hi: ep.Max, flat: flat}
	t.inImg, t.inCh = planeStrides(n, g.C, plane, inCN)
	t.outImg, t.outCh = planeStrides(n, g.C, oplane, outCN)
	threads := ctx.threads
	if n*g.C*oplane*g.KH*g.KW < dwParallelMinMACs {
		threads = 1
	}
	ctx.parallel(t, n*g.C, threads)
	*t = dwTask{}
}

// run processes units [lo, hi) in channel-major order (unit u is image
// u%n of channel u/n), so that each run of one channel's images is one
// kernel call.
func (t *dwTask) run(lo, hi, tid int) {
	g := &t.g
	plane, oplane, ksz := g.H*g.W, g.OH*g.OW, g.KH*g.KW
	if t.n == 1 && t.flat != nil && hi > lo {
		// one image: the channels [lo, hi) in one call
		bias := t.bias
		if bias == nil {
			bias = t.ctx.scratch[tid].zeroRow(hi)
		}
		if dw3x3FlatChans(g, t.flat, t.in[lo*t.inCh:], t.weight[lo*ksz:], bias[lo:], t.out[lo*t.outCh:], hi-lo, t.inCh, t.outCh, t.clip, t.lo, t.hi) ||
			dw3x3FlatS2Chans(&t.ctx.scratch[tid], g, t.flat, t.in[lo*t.inCh:], t.weight[lo*ksz:], bias[lo:], t.out[lo*t.outCh:], hi-lo, t.inCh, t.outCh, t.clip, t.lo, t.hi) {
			return
		}
	}
	for u := lo; u < hi; {
		c, img := u/t.n, u%t.n
		cnt := min(hi-u, t.n-img) // images of channel c in this chunk
		var b float32
		if t.bias != nil {
			b = t.bias[c]
		}
		w := t.weight[c*ksz : (c+1)*ksz]
		xi, yi := img*t.inImg+c*t.inCh, img*t.outImg+c*t.outCh
		if dw3x3Forward(&t.ctx.scratch[tid], g, t.flat, t.in[xi:], w, b, t.out[yi:], cnt, t.inImg, t.outImg, t.clip, t.lo, t.hi) {
			u += cnt
			continue
		}
		for i := 0; i < cnt; i++ {
			x, y := xi+i*t.inImg, yi+i*t.outImg
			dwPlane(g, t.in[x:x+plane], w, b, t.out[y:y+oplane])
		}
		if t.clip {
			for i := 0; i < cnt; i++ {
				y := yi + i*t.outImg
				biasActTile(t.out[y:y+oplane], oplane, 1, oplane, nil, nil, t.lo, t.hi)
			}
		}
		u += cnt
	}
}

// dwPlane convolves one plane with one KH x KW filter (general geometry).
func dwPlane(g *ConvGeom, in, w []float32, bias float32, out []float32) {
	for i := range out[:g.OH*g.OW] {
		out[i] = bias
	}
	dwTaps(g, w, in, out, false)
}

// dwTaps adds, for every tap of the KH x KW filter w, the tap weight times
// the plane values it reads into the output plane outs; with toPlane (the
// adjoint, for the input gradient) it adds the weight times the outs values
// into the plane values they were read from.
func dwTaps(g *ConvGeom, w, plane, outs []float32, toPlane bool) {
	sw := g.Strides[1]
	g.eachTap(func(oy, k, iy, xlo, xhi, ix int) {
		wv := w[k]
		row := plane[iy*g.W : (iy+1)*g.W]
		o := outs[oy*g.OW+xlo : oy*g.OW+xhi]
		switch {
		case sw == 1 && toPlane:
			d := row[ix : ix+len(o)]
			for j, v := range o {
				d[j] += wv * v
			}
		case sw == 1:
			s := row[ix : ix+len(o)]
			for j, v := range s {
				o[j] += wv * v
			}
		case toPlane:
			for _, v := range o {
				row[ix] += wv * v
				ix += sw
			}
		default:
			for j := range o {
				o[j] += wv * row[ix]
				ix += sw
			}
		}
	})
}

// eachTap calls fn for every output row oy and kernel tap k = ky*KW+kx
// (taps in order within a row) whose input row iy lies inside the plane
// and whose output columns [xlo, xhi) read inside it, starting at input
// column ix and stepping by the column stride.
func (g *ConvGeom) eachTap(fn func(oy, k, iy, xlo, xhi, ix int)) {
	for oy := 0; oy < g.OH; oy++ {
		for ky := 0; ky < g.KH; ky++ {
			iy, ok := g.tapRow(oy, ky)
			if !ok {
				continue
			}
			for kx := 0; kx < g.KW; kx++ {
				if xlo, xhi, ix := g.tapCols(kx); xlo < xhi {
					fn(oy, ky*g.KW+kx, iy, xlo, xhi, ix)
				}
			}
		}
	}
}

// DepthwiseConv2DBackward computes the gradients of DepthwiseConv2D given
// dout (n*C*OH*OW values): din (n*C*H*W) w.r.t. the input, dweight (C*KH*KW)
// and dbias (C). Each of din, dweight and dbias may be nil to skip it; the
// ones given are overwritten (not accumulated). in is needed only for
// dweight and weight only for din. ctx may be nil (single thread).
func DepthwiseConv2DBackward(ctx *Context, g ConvGeom, n int, in, weight, dout, din, dweight, dbias []float32) {
	plane, oplane, ksz := g.H*g.W, g.OH*g.OW, g.KH*g.KW
	if len(dout) < n*g.C*oplane ||
		(din != nil && (len(din) < n*g.C*plane || len(weight) < g.C*ksz)) ||
		(dweight != nil && (len(dweight) < g.C*ksz || len(in) < n*g.C*plane)) ||
		(dbias != nil && len(dbias) < g.C) {
		panic(fmt.Sprintf("kernels: DepthwiseConv2DBackward buffers too small for n=%d %+v", n, g))
	}
	ctx = orSingle(ctx)
	if (din != nil || dweight != nil) && ctx.dwTinyBackward(&g, n, in, weight, dout, din, dweight) {
		din, dweight = nil, nil
		if dbias == nil {
			return
		}
	}
	t := &ctx.dwb
	*t = dwBackTask{ctx: ctx, g: g, n: n, in: in, weight: weight, dout: dout, din: din, dweight: dweight, dbias: dbias}
	threads := ctx.threads
	if n*g.C*oplane*ksz < dwParallelMinMACs {
		threads = 1
	}
	ctx.parallel(t, g.C, threads)
	*t = dwBackTask{}
}

func (t *dwBackTask) run(lo, hi, tid int) {
	g := &t.g
	plane, oplane, ksz := g.H*g.W, g.OH*g.OW, g.KH*g.KW
	s := &t.ctx.scratch[tid]
	for c := lo; c < hi; c++ {
		if t.dbias != nil {
			var s float32
			for img := 0; img < t.n; img++ {
				for _, v := range t.dout[(img*g.C+c)*oplane : (img*g.C+c+1)*oplane] {
					s += v
				}
			}
			t.dbias[c] = s
		}
		if t.dweight != nil {
			dw := t.dweight[c*ksz : (c+1)*ksz]
			clear(dw)
			s.buf2 = grow(s.buf2, 9*16)
			acc := s.buf2
			clear(acc)
			fast := dw3x3WeightGrad(s, g, t.in[c*plane:], t.dout[c*oplane:], acc, t.n, g.C*plane, g.C*oplane)
			if !fast {
				for img := 0; img < t.n; img++ {
					pi := img*g.C + c
					dwWeightPlane(g, t.in[pi*plane:(pi+1)*plane], t.dout[pi*oplane:(pi+1)*oplane], dw)
				}
			}
			if fast && t.n > 0 {
				for k := range dw {
					var sum float32
					for _, v := range acc[k*16 : k*16+16] {
						sum += v
					}
					dw[k] = sum
				}
			}
		}
		if t.din != nil {
			w := t.weight[c*ksz : (c+1)*ksz]
			for img := 0; img < t.n; img++ {
				pi := img*g.C + c
				dout, din := t.dout[pi*oplane:(pi+1)*oplane], t.din[pi*plane:(pi+1)*plane]
				if !dw3x3InputGrad(s, g, w, dout, din) {
					dwInputPlane(g, w, dout, din)
				}
			}
		}
	}
}

// dwWeightPlane adds the weight gradient of one plane into dw.
func dwWeightPlane(g *ConvGeom, in, dout, dw []float32) {
	sw := g.Strides[1]
	for ky := 0; ky < g.KH; ky++ {
		for kx := 0; kx < g.KW; kx++ {
			xlo, xhi, ix0 := g.tapCols(kx)
			if xlo >= xhi {
				continue
			}
			var s float32
			for oy := 0; oy < g.OH; oy++ {
				iy, ok := g.tapRow(oy, ky)
				if !ok {
					continue
				}
				irow := in[iy*g.W : (iy+1)*g.W]
				o := dout[oy*g.OW+xlo : oy*g.OW+xhi]
				ix := ix0
				if sw == 1 {
					s += dot(o, irow[ix:ix+len(o)])
					continue
				}
				for _, v := range o {
					s += v * irow[ix]
					ix += sw
				}
			}
			dw[ky*g.KW+kx] += s
		}
	}
}

// dwInputPlane overwrites din (one plane) with the input gradient.
func dwInputPlane(g *ConvGeom, w, dout, din []float32) {
	clear(din)
	dwTaps(g, w, din, dout, true)
}

func dot(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}
