package engine

import (
	"fmt"
	"math"

	"github.com/lprconv/lprconv/engine/kernels"
	"github.com/lprconv/lprconv/shapeinfer"
)

// spatial describes the padding of one spatial axis of a convolution or
// pooling window.
type spatialAttrs struct {
	kernel, strides, dilations []int
	padBegin, padEnd           []int
}

// windowAttrs reads the strides, dilations, pads and auto_pad of the node
// for spatial input sizes in and the kernel, with shapeinfer.NewWindow,
// and returns them with the output spatial sizes.
func windowAttrs(b *nodeBuild, in []int, kernel []int, ceil bool) (spatialAttrs, []int, error) {
	w, err := shapeinfer.NewWindow(b.node, toInt64s(in), toInt64s(kernel), ceil)
	if err != nil {
		return spatialAttrs{}, nil, err
	}
	s := spatialAttrs{kernel: kernel, strides: toInts(w.Strides), dilations: toInts(w.Dilations),
		padBegin: toInts(w.PadBegin), padEnd: toInts(w.PadEnd)}
	return s, toInts(w.Out), nil
}

// geom2D maps 1-D or 2-D window attributes to a kernels.ConvGeom (1-D
// becomes height 1).
func geom2D(c int, in []int, s spatialAttrs, out []int) kernels.ConvGeom {
	if len(in) == 1 {
		return kernels.ConvGeom{C: c, H: 1, W: in[0], KH: 1, KW: s.kernel[0],
			Strides: [2]int{1, s.strides[0]}, Pads: [4]int{0, s.padBegin[0], 0, s.padEnd[0]},
			Dilations: [2]int{1, s.dilations[0]}, OH: 1, OW: out[0]}
	}
	return kernels.ConvGeom{C: c, H: in[0], W: in[1], KH: s.kernel[0], KW: s.kernel[1],
		Strides:   [2]int{s.strides[0], s.strides[1]},
		Pads:      [4]int{s.padBegin[0], s.padBegin[1], s.padEnd[0], s.padEnd[1]},
		Dilations: [2]int{s.dilations[0], s.dilations[1]}, OH: out[0], OW: out[1]}
}

type convKind int

const (
	convGeneral   convKind = iota // im2col + GEMM per image and group
	convPointwise                 // 1x1, stride 1, no padding: one GEMM per image
	convDepthwise                 // group == C == M: direct depthwise kernel
)

// ConvOp is a compiled Conv node (NCHW, 1-D or 2-D).
type ConvOp struct {
	N, C, M, Group int
	Geom           kernels.ConvGeom // per group: Geom.C is C/Group
	Kind           convKind
	// Act, when set, is a fused Relu or Clip applied to the output.
	Act *UnaryOp
	// AddRes, set by fusion on a group-1 pointwise convolution, makes the
	// output Add(conv(X), R) + bias: R is first written into the output
	// and the GEMM accumulates into it (beta = 1), before Act. R is the
	// step's input 3 when Res is nil; otherwise Res (a group = C = M
	// convolution: per-channel scale or depthwise) computes R from the
	// step's inputs 3 (its X), 4 (its weight) and 5 (its bias, or nil).
	AddRes bool
	Res    *ConvOp
	// Chunk > 0 selects the batched path for group-1 convolutions with
	// small output planes: Chunk images at a time are unfolded side by side
	// into one [K, Chunk*OH*OW] matrix, multiplied by W in one GEMM, and
	// scattered back to NCHW with bias and activation.
	Chunk int

	// wt, when set, is the constant weight packed for the pixel-major
	// path (pixelmajor.go), which then computes each image's product.
	wt *kernels.PackedWeights
	// cn says which activations are stored channel-major (layout.go).
	cn convLayout

	cur convRun // operands of the current Forward, for worker threads
}

type convPhase int

// resMode says how the batched path fills its GEMM output before
// accumulating into it.
type resMode int

const (
	resNone  resMode = iota // no fused residual (beta = 0)
	resCopy                 // copy r (NCHW, M channels)
	resScale                // d[ch]*r + db[ch] (r NCHW with M channels)
)

// resSource is the fused residual of the batched path.
type resSource struct {
	mode     resMode
	r, d, db []float32
	cn       bool // r is CNHW (layout.go)
}

const (
	phasePack convPhase = iota
	phaseUnpack
	phaseScale // per-channel scale: 1x1 convolution with group = C = M
	phaseRows  // batched path: fused residual rows from a CNHW source
)

type convRun struct {
	phase      convPhase
	res        resSource // batched path: fused residual packed into yp
	x, y, bias []float32
	w          []float32
	b, yp      []float32 // batched path: unfolded input and GEMM output
	ldb, ldc   int       // their row strides
	n0, cols   int
	nb         int // images in the current chunk
}

// batchedPlaneLimit bounds the output planes (OH*OW below it) for which
// the batched GEMM path is used for general convolutions; larger planes
// make per-image GEMMs efficient. At 16x16 (the first 3x3 stride-2
// convolution of the 32x32 fixtures) the per-image path was 8-15% faster
// (it writes NCHW directly; the batched path scatters its output back).
const batchedPlaneLimit = 256

// pointwiseBatchedPlaneLimit is the largest output plane for which a
// group-1 pointwise convolution over several images uses the batched path:
// per-image GEMMs with so few columns run far below the kernels' peak.
// Measured with BenchmarkPointwiseSmallPlane (one thread, batch 64): at
// 2x2 planes the batched path is 1.0-1.5x faster for C >= M and 2.6-3x
// for C < M (an LPR module's second factor). Since the GEMM kernels apply
// the bias and activation before their store (which the batched path's
// one GEMM over whole panels can use, and tiles spanning images cannot),
// it is also faster at 4x4: the 4x4 pointwise layers of the MobileNetV1
// and ShuffleNetV2 fixtures took 490 us instead of 600 us (sum of per-step
// thread CPU minima, batch 64); at 8x8 it is slower (310 us against 230).
const pointwiseBatchedPlaneLimit = 16

// batchedScratchLimit bounds the scratch of the batched path, in floats.
const batchedScratchLimit = 4 << 20

func buildConv(b *nodeBuild) (Op, error) {
	x, err := b.need(0)
	if err != nil {
		return nil, err
	}
	w, err := b.need(1)
	if err != nil {
		return nil, err
	}
	if !x.dtype.IsFloat() || !w.dtype.IsFloat() {
		return nil, fmt.Errorf("Conv supports float tensors only")
	}
	rank := len(x.shape)
	if rank != 3 && rank != 4 {
		return nil, fmt.Errorf("Conv with %d spatial dims is not supported (1-D and 2-D are)", rank-2)
	}
	if len(w.shape) != rank {
		return nil, fmt.Errorf("weight has shape %v; input has rank %d", w.shape, rank)
	}
	group := int(b.attrInt("group", 1))
	n, c, m := x.shape[0], x.shape[1], w.shape[0]
	if group < 1 || c%group != 0 || m%group != 0 || w.shape[1]*group != c {
		return nil, fmt.Errorf("group %d does not fit input channels %d and weight %v", group, c, w.shape)
	}
	kernel := w.shape[2:]
	for _, k := range kernel {
		if k < 1 {
			return nil, fmt.Errorf("weight %v has an empty kernel", w.shape)
		}
	}
	if n < 1 || c < 1 || m < 1 {
		return nil, fmt.Errorf("empty input %v or weight %v is not supported", x.shape, w.shape)
	}
	if ks := b.attrInts("kernel_shape"); ks != nil {
		if len(ks) != len(kernel) {
			return nil, fmt.Errorf("kernel_shape %v does not match weight %v", ks, w.shape)
		}
		for i := range ks {
			if int(ks[i]) != kernel[i] {
				return nil, fmt.Errorf("kernel_shape %v does not match weight %v", ks, w.shape)
			}
		}
	}
	if bias := b.input(2); bias != nil && (len(bias.shape) != 1 || bias.shape[0] != m) {
		return nil, fmt.Errorf("bias has shape %v; want [%d]", bias.shape, m)
	}
	s, out, err := windowAttrs(b, x.shape[2:], kernel, false)
	if err != nil {
		return nil, err
	}
	op := &ConvOp{N: n, C: c, M: m, Group: group, Geom: geom2D(c/group, x.shape[2:], s, out)}
	g := op.Geom
	switch {
	case g.KH == 1 && g.KW == 1 && g.Strides == [2]int{1, 1} && g.Pads == [4]int{}:
		op.Kind = convPointwise
	case group == c && m == c:
		op.Kind = convDepthwise
		op.Geom.C = c
	}
	ohw := g.OH * g.OW
	pointwiseBatched := op.Kind == convPointwise && ohw > 1 && ohw <= pointwiseBatchedPlaneLimit
	if group == 1 && n > 1 && ((ohw < batchedPlaneLimit && op.Kind == convGeneral) || pointwiseBatched) {
		kk := c * g.KH * g.KW
		op.Chunk = min(n, max(1, batchedScratchLimit/((kk+m)*ohw)))
	}
	b.setOut(0, append([]int{n, m}, out...), Float32)
	return op, nil
}

// ScratchFloats returns the im2col or batched-path buffer size.
func (op *ConvOp) ScratchFloats() int {
	g := op.Geom
	ohw := g.OH * g.OW
	if op.Chunk > 0 {
		rows := 0 // CNHW input and output are used in place
		if !op.cn.x {
			rows += op.C * g.KH * g.KW
		}
		if !op.cn.y {
			rows += op.M
		}
		return rows * op.Chunk * ohw
	}
	if op.Kind != convGeneral {
		return 0
	}
	return g.C * g.KH * g.KW * ohw
}

// Forward computes Y = conv(X, W) + B.
func (op *ConvOp) Forward(c *Ctx, in, out []*Tensor) error {
	x, w, y := in[0].F, in[1].F, out[0].F
	var bias []float32
	if len(in) > 2 && in[2] != nil {
		bias = in[2].F
	}
	g := op.Geom
	ohw, hw := g.OH*g.OW, g.H*g.W
	if op.Kind == convDepthwise {
		kernels.DepthwiseConv2DLayout(c.K, g, op.N, x, w, y, op.epilogue(bias, nil), op.cn.x, op.cn.y)
		return nil
	}
	if op.channelScale() {
		op.setRun(phaseScale, x, y, w, bias)
		c.parallelFor(op.N*op.C, hw, op)
		op.cur = convRun{}
		return nil
	}
	var beta float32
	var res resSource
	if op.AddRes {
		beta = 1
		switch {
		case op.Chunk > 0 && op.Res == nil:
			// identity: packed straight from the residual tensor
			res = resSource{mode: resCopy, r: in[3].F, cn: op.cn.r}
		case op.Chunk > 0 && op.Res.channelScale():
			// diag: d*x + bias computed straight into the packed output
			res = resSource{mode: resScale, r: in[3].F, d: in[4].F, cn: op.cn.r}
			if len(in) > 5 && in[5] != nil {
				res.db = in[5].F
			}
		default:
			if err := op.residual(c, in[3:], out); err != nil {
				return err
			}
			if !op.cn.y { // a CNHW y holds R in place already
				res = resSource{mode: resCopy, r: y}
			}
		}
	}
	if op.Chunk > 0 {
		op.forwardBatched(c, x, w, bias, y, beta, res)
		return nil
	}
	if op.Kind == convPointwise && ohw == 1 && op.Group == 1 {
		// X is [N, C]: Y[N, M] = X * W^T in one GEMM, bias per column
		c.K.SgemmEx(false, true, op.N, op.M, op.C, 1, x, op.C, w, op.C, beta, y, op.M, op.epilogue(nil, bias))
		return nil
	}
	if op.wt != nil && beta == 0 && c.K.PointwisePixelMajor(hw, x, op.wt, y, op.epilogue(bias, nil)) {
		for i := 1; i < op.N; i++ {
			c.K.PointwisePixelMajor(hw, x[i*op.C*hw:], op.wt, y[i*op.M*hw:], op.epilogue(bias, nil))
		}
		return nil
	}
	if op.Kind == convPointwise && op.Group == 1 {
		c.K.SgemmBatchedEx(false, false, op.M, hw, op.C, 1, w, op.C, 0, x, hw, op.C*hw, beta, y, hw, op.M*hw, op.N, op.epilogue(bias, nil))
		return nil
	}
	if op.AddRes {
		return fmt.Errorf("internal error: residual Add fused into a convolution that is not group-1 pointwise")
	}
	cg, mg := op.C/op.Group, op.M/op.Group
	kk := cg * g.KH * g.KW
	var col []float32
	band := g.OH // output rows unfolded at a time
	if op.Kind == convGeneral {
		col = c.Scratch(kk * ohw)
		band = min(g.OH, max(1, im2colBandFloats/max(kk*g.OW, 1)))
	}
	for i := 0; i < op.N; i++ {
		for gi := 0; gi < op.Group; gi++ {
			xg := x[(i*op.C+gi*cg)*hw : (i*op.C+(gi+1)*cg)*hw]
			yg := y[(i*op.M+gi*mg)*ohw : (i*op.M+(gi+1)*mg)*ohw]
			wg := w[gi*mg*kk : (gi+1)*mg*kk]
			var gb []float32
			if bias != nil {
				gb = bias[gi*mg : (gi+1)*mg]
			}
			if op.Kind != convGeneral {
				c.K.SgemmEx(false, false, mg, ohw, kk, 1, wg, kk, xg, ohw, 0, yg, ohw, op.epilogue(gb, nil))
				continue
			}
			for oy0 := 0; oy0 < g.OH; oy0 += band {
				oy1 := min(g.OH, oy0+band)
				cols := (oy1 - oy0) * g.OW
				kernels.Im2colRows(g, xg, col, cols, oy0, oy1)
				c.K.SgemmEx(false, false, mg, cols, kk, 1, wg, kk, col, cols, 0, yg[oy0*g.OW:], ohw, op.epilogue(gb, nil))
			}
		}
	}
	return nil
}

// im2colBandFloats bounds the column matrix of one band of output rows of
// a general convolution run image by image (128 KiB: it stays in L2 while
// the GEMM reads it). Unfolding a 224x224 image's first 3x3 convolution
// whole wrote 1.35 MB that the GEMM then read back from L3; in bands of
// 128 KiB the step took 410-530 us instead of 600-690 (thread CPU minima;
// bands of 32 to 256 KiB were alike).
const im2colBandFloats = 32 << 10

// channelScale reports whether the convolution is a per-channel scale: 1x1,
// stride 1, no padding, group = C = M (the diag residual of an LPR module).
func (op *ConvOp) channelScale() bool {
	return op.Kind == convPointwise && op.Group == op.C && op.M == op.C
}

// residual writes the fused residual R into out[0]: a copy of in[0], or
// Res applied to in[0:3].
func (op *ConvOp) residual(c *Ctx, in, out []*Tensor) error {
	if op.Res != nil {
		return op.Res.Forward(c, in, out)
	}
	r, y := in[0].F, out[0].F
	if len(r) != len(y) {
		return fmt.Errorf("internal error: fused residual has %d values; output %d", len(r), len(y))
	}
	copy(y, r)
	return nil
}

// scalePlanes computes planes [lo, hi) (image*C + channel) of a per-channel
// scale: y = w[ch]*x + bias[ch], then Act.
func (op *ConvOp) scalePlanes(lo, hi int) {
	r := &op.cur
	hw := op.Geom.H * op.Geom.W
	lo32, hi32 := float32(math.Inf(-1)), float32(math.Inf(1))
	clip := op.Act != nil
	if clip {
		lo32 = 0
		if op.Act.Kind == uClip {
			lo32, hi32 = op.Act.Lo, op.Act.Hi
		}
	}
	if hw == 1 && !clip {
		// one value per plane: walk the channels of each image
		for j := lo; j < hi; {
			ch := j % op.C
			n := min(hi-j, op.C-ch)
			xr, yr, wr := r.x[j:j+n], r.y[j:j+n], r.w[ch:ch+n]
			if r.bias != nil {
				br := r.bias[ch : ch+n]
				for k, v := range xr {
					yr[k] = v*wr[k] + br[k]
				}
			} else {
				for k, v := range xr {
					yr[k] = v * wr[k]
				}
			}
			j += n
		}
		return
	}
	ch := lo % op.C
	for j := lo; j < hi; j, ch = j+1, ch+1 {
		if ch == op.C {
			ch = 0
		}
		a := r.w[ch]
		var b0 float32
		if r.bias != nil {
			b0 = r.bias[ch]
		}
		xr := r.x[j*hw : (j+1)*hw]
		yr := r.y[j*hw : (j+1)*hw]
		yr = yr[:len(xr)]
		if !clip {
			for i, v := range xr {
				yr[i] = v*a + b0
			}
			continue
		}
		for i, v := range xr {
			t := v*a + b0
			// NaN stays NaN: comparisons with NaN are false
			if t < lo32 {
				t = lo32
			} else if t > hi32 {
				t = hi32
			}
			yr[i] = t
		}
	}
}

// epilogue returns the kernels' fused bias and activation for this
// convolution.
func (op *ConvOp) epilogue(rowBias, colBias []float32) kernels.Epilogue {
	ep := kernels.Epilogue{RowBias: rowBias, ColBias: colBias}
	if op.Act != nil {
		ep.Clip, ep.Min, ep.Max = true, 0, float32(math.Inf(1))
		if op.Act.Kind == uClip {
			ep.Min, ep.Max = op.Act.Lo, op.Act.Hi
		}
	}
	return ep
}

func (op *ConvOp) setRun(phase convPhase, x, y, w, bias []float32) {
	op.cur = convRun{phase: phase, x: x, y: y, w: w, bias: bias}
}

// forwardBatched runs a group-1 convolution Chunk images at a time as one
// GEMM each.
func (op *ConvOp) forwardBatched(c *Ctx, x, w, bias, y []float32, beta float32, res resSource) {
	g := op.Geom
	ohw := g.OH * g.OW
	kk := op.C * g.KH * g.KW
	nc := op.N * ohw // one channel of every image in CNHW
	op.setRun(phasePack, x, y, w, bias)
	op.cur.res = res
	scratch := c.Scratch(op.ScratchFloats())
	for n0 := 0; n0 < op.N; n0 += op.Chunk {
		nb := min(op.Chunk, op.N-n0)
		cols := nb * ohw
		r := &op.cur
		r.n0, r.cols, r.nb = n0, cols, nb
		// B [kk][cols] and C [M][cols] of the GEMM: CNHW input and output
		// are used in place, the others packed in the scratch
		off := 0
		if r.b, r.ldb = x[n0*ohw:], nc; !op.cn.x {
			r.b, r.ldb = scratch[:kk*cols], cols
			off = kk * cols
		}
		if r.yp, r.ldc = y[n0*ohw:], nc; !op.cn.y {
			r.yp, r.ldc = scratch[off:off+op.M*cols], cols
		}
		if !op.cn.x || (res.mode != resNone && !res.cn) {
			r.phase = phasePack
			c.parallelFor(nb, kk*ohw, op)
		}
		if res.mode != resNone && res.cn {
			r.phase = phaseRows
			c.parallelFor(op.M, cols, op)
		}
		c.K.SgemmEx(false, false, op.M, cols, kk, 1, w, kk, r.b, r.ldb, beta, r.yp, r.ldc, op.epilogue(bias, nil))
		if !op.cn.y {
			r.phase = phaseUnpack
			c.parallelFor(op.M, nb*ohw, op)
		}
	}
	op.cur = convRun{}
}

// run does one phase of the batched path over [lo, hi): images to unfold,
// or (image, channel) rows to scatter back.
func (op *ConvOp) run(lo, hi int) {
	r := &op.cur
	g := op.Geom
	hw, ohw := g.H*g.W, g.OH*g.OW
	switch r.phase {
	case phaseScale:
		op.scalePlanes(lo, hi)
	case phaseRows:
		op.fillResidualRows(lo, hi)
	case phasePack:
		for i := lo; i < hi; i++ {
			if !op.cn.x { // a CNHW input is read in place by the GEMM
				xi := r.x[(r.n0+i)*op.C*hw : (r.n0+i+1)*op.C*hw]
				if op.Kind == convPointwise {
					stridedCopy(r.b[i*ohw:], r.cols, xi, hw, hw, op.C)
				} else {
					kernels.Im2colLD(g, xi, r.b[i*ohw:], r.cols)
				}
			}
			if r.res.cn {
				continue
			}
			ri := (r.n0 + i) * op.M * ohw
			switch r.res.mode {
			case resCopy:
				stridedCopy(r.yp[i*ohw:], r.ldc, r.res.r[ri:ri+op.M*ohw], ohw, ohw, op.M)
			case resScale:
				scaledPlanesToCols(r.yp[i*ohw:], r.ldc, r.res.r[ri:ri+op.M*ohw], op.M, ohw, r.res.d, r.res.db)
			}
		}
	case phaseUnpack:
		// row m of the GEMM output holds channel m of every image
		for m := lo; m < hi; m++ {
			stridedCopy(r.y[(r.n0*op.M+m)*ohw:], op.M*ohw, r.yp[m*r.cols:(m+1)*r.cols], ohw, ohw, r.nb)
		}
	}
}

// stridedCopy copies count blocks of n values: block k from src[k*ss:] to
// dst[k*ds:]. Small blocks (the planes of late layers) move as arrays,
// without a call to memmove.
func stridedCopy(dst []float32, ds int, src []float32, ss, n, count int) {
	if count == 0 {
		return
	}
	_ = dst[(count-1)*ds+n-1]
	_ = src[(count-1)*ss+n-1]
	switch n {
	case 1:
		for k := 0; k < count; k++ {
			dst[k*ds] = src[k*ss]
		}
	case 2:
		for k := 0; k < count; k++ {
			*(*[2]float32)(dst[k*ds:]) = *(*[2]float32)(src[k*ss:])
		}
	case 4:
		for k := 0; k < count; k++ {
			*(*[4]float32)(dst[k*ds:]) = *(*[4]float32)(src[k*ss:])
		}
	default:
		for k := 0; k < count; k++ {
			copy(dst[k*ds:k*ds+n], src[k*ss:k*ss+n])
		}
	}
}

// scaledPlanesToCols copies n planes of hw values (planes[ch*hw:]) into
// rows of a column matrix (row ch at dst[ch*ld:]) as d[ch]*v + db[ch] (db
// may be nil).
func scaledPlanesToCols(dst []float32, ld int, planes []float32, n, hw int, d, db []float32) {
	for ch := 0; ch < n; ch++ {
		a := d[ch]
		var b0 float32
		if db != nil {
			b0 = db[ch]
		}
		if hw == 4 {
			s, o := (*[4]float32)(planes[ch*4:]), (*[4]float32)(dst[ch*ld:])
			o[0], o[1], o[2], o[3] = s[0]*a+b0, s[1]*a+b0, s[2]*a+b0, s[3]*a+b0
			continue
		}
		src := planes[ch*hw : (ch+1)*hw]
		out := dst[ch*ld : ch*ld+hw]
		for k, v := range src {
			out[k] = v*a + b0
		}
	}
}
