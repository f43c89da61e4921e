package engine

import (
	"fmt"
	"math"

	"github.com/lprconv/lprconv/engine/kernels"
	"github.com/lprconv/lprconv/shapeinfer"
)

// PoolOp is a compiled MaxPool, AveragePool or global pooling node.
type PoolOp struct {
	Max             bool
	CountIncludePad bool
	Planes          int
	Geom            kernels.ConvGeom
	x, y            []float32 // operands of the current Forward
}

func buildPool(isMax bool) func(b *nodeBuild) (Op, error) {
	return func(b *nodeBuild) (Op, error) {
		x, err := b.need(0)
		if err != nil {
			return nil, err
		}
		if !x.dtype.IsFloat() {
			return nil, fmt.Errorf("pooling supports float tensors only")
		}
		rank := len(x.shape)
		if rank != 3 && rank != 4 {
			return nil, fmt.Errorf("pooling with %d spatial dims is not supported (1-D and 2-D are)", rank-2)
		}
		if len(b.outs) > 1 && b.node.Output[1] != "" {
			return nil, fmt.Errorf("the Indices output is not supported")
		}
		if b.attrInt("storage_order", 0) != 0 {
			return nil, fmt.Errorf("storage_order=1 is not supported")
		}
		ks := b.attrInts("kernel_shape")
		if len(ks) != rank-2 {
			return nil, fmt.Errorf("kernel_shape %v does not match input rank %d", ks, rank)
		}
		kernel := make([]int, len(ks))
		for i, k := range ks {
			if k < 1 {
				return nil, fmt.Errorf("kernel_shape %v must be positive", ks)
			}
			kernel[i] = int(k)
		}
		if !isMax && b.has("dilations") {
			for _, d := range b.attrInts("dilations") {
				if d != 1 {
					return nil, fmt.Errorf("AveragePool dilations are not supported")
				}
			}
		}
		s, out, err := windowAttrs(b, x.shape[2:], kernel, b.attrInt("ceil_mode", 0) != 0)
		if err != nil {
			return nil, err
		}
		op := &PoolOp{Max: isMax, CountIncludePad: b.attrInt("count_include_pad", 0) != 0,
			Planes: x.shape[0] * x.shape[1], Geom: geom2D(1, x.shape[2:], s, out)}
		b.setOut(0, append([]int{x.shape[0], x.shape[1]}, out...), Float32)
		return op, nil
	}
}

// Forward pools every plane, splitting planes over threads.
func (op *PoolOp) Forward(c *Ctx, in, out []*Tensor) error {
	op.x, op.y = in[0].F, out[0].F
	g := op.Geom
	c.parallelFor(op.Planes, g.OH*g.OW*g.KH*g.KW, op)
	op.x, op.y = nil, nil
	return nil
}

// run pools planes [lo, hi).
func (op *PoolOp) run(lo, hi int) {
	g := op.Geom
	hw, ohw := g.H*g.W, g.OH*g.OW
	if op.Max && kernels.MaxPool3x3(&g, hi-lo, op.x[lo*hw:hi*hw], op.y[lo*ohw:hi*ohw]) {
		return
	}
	// output columns whose window lies entirely inside the input
	ilo, ihi := validRange(-g.Pads[1], g.Strides[1], g.W-(g.KW-1)*g.Dilations[1], g.OW)
	for p := lo; p < hi; p++ {
		xp, yp := op.x[p*hw:(p+1)*hw], op.y[p*ohw:(p+1)*ohw]
		for oy := 0; oy < g.OH; oy++ {
			yrow := yp[oy*g.OW : (oy+1)*g.OW]
			y0 := oy*g.Strides[0] - g.Pads[0]
			for ox := 0; ox < g.OW; ox++ {
				if ox == ilo && ilo < ihi {
					op.interior(xp, yrow, y0, ilo, ihi)
					ox = ihi - 1
					continue
				}
				yrow[ox] = op.window(xp, y0, ox*g.Strides[1]-g.Pads[1])
			}
		}
	}
}

// avgCount returns the divisor of an average-pooling window with top-left
// corner (y0, x0) whose taps inside the input span rows [ylo, yhi) and
// columns [xlo, xhi): those taps, or with CountIncludePad the window
// clipped to the padded input.
func (op *PoolOp) avgCount(y0, x0, ylo, yhi, xlo, xhi int) int {
	g := &op.Geom
	if op.CountIncludePad {
		return (min(y0+g.KH, g.H+g.Pads[2]) - y0) * (min(x0+g.KW, g.W+g.Pads[3]) - x0)
	}
	return max(yhi-ylo, 0) * max(xhi-xlo, 0)
}

// window pools one window with top-left corner (y0, x0), skipping taps in
// the padding.
func (op *PoolOp) window(xp []float32, y0, x0 int) float32 {
	g := &op.Geom
	dh, dw := g.Dilations[0], g.Dilations[1]
	if op.Max {
		m := float32(math.Inf(-1))
		for ky := 0; ky < g.KH; ky++ {
			iy := y0 + ky*dh
			if iy < 0 || iy >= g.H {
				continue
			}
			row := xp[iy*g.W : (iy+1)*g.W]
			for kx := 0; kx < g.KW; kx++ {
				if ix := x0 + kx*dw; ix >= 0 && ix < g.W {
					m = max(m, row[ix])
				}
			}
		}
		return m
	}
	ylo, yhi := max(y0, 0), min(y0+g.KH, g.H)
	xlo, xhi := max(x0, 0), min(x0+g.KW, g.W)
	var s float32
	for iy := ylo; iy < yhi; iy++ {
		for _, v := range xp[iy*g.W+xlo : iy*g.W+xhi] {
			s += v
		}
	}
	if cnt := op.avgCount(y0, x0, ylo, yhi, xlo, xhi); cnt > 0 {
		s /= float32(cnt)
	}
	return s
}

// interior pools output columns [lo, hi) of one row, whose windows lie
// horizontally inside the input: only the rows need checking.
func (op *PoolOp) interior(xp, yrow []float32, y0, lo, hi int) {
	g := &op.Geom
	sw, dh, dw := g.Strides[1], g.Dilations[0], g.Dilations[1]
	kylo, kyhi := 0, g.KH
	for kylo < g.KH && y0+kylo*dh < 0 {
		kylo++
	}
	for kyhi > kylo && y0+(kyhi-1)*dh >= g.H {
		kyhi--
	}
	out := yrow[lo:hi]
	x0 := lo*sw - g.Pads[1]
	if op.Max {
		if kyhi-kylo <= 8 {
			// keep each output's running max in a register
			var rows [8][]float32
			nr := 0
			for ky := kylo; ky < kyhi; ky++ {
				rows[nr] = xp[(y0+ky*dh)*g.W : (y0+ky*dh+1)*g.W]
				nr++
			}
			span := (g.KW-1)*dw + 1
			if g.KW == 3 && dw == 1 {
				for i := range out {
					xs := x0 + i*sw
					m := float32(math.Inf(-1))
					for _, row := range rows[:nr] {
						w := row[xs : xs+3]
						m = max(m, w[0], w[1], w[2]) // branch-free
					}
					out[i] = m
				}
				return
			}
			for i := range out {
				xs := x0 + i*sw
				m := float32(math.Inf(-1))
				for _, row := range rows[:nr] {
					win := row[xs : xs+span]
					for kx := 0; kx < len(win); kx += dw {
						m = max(m, win[kx])
					}
				}
				out[i] = m
			}
			return
		}
		for i := range out {
			out[i] = float32(math.Inf(-1))
		}
		for ky := kylo; ky < kyhi; ky++ {
			row := xp[(y0+ky*dh)*g.W : (y0+ky*dh+1)*g.W]
			for kx := 0; kx < g.KW; kx++ {
				ix := x0 + kx*dw
				for i := range out {
					out[i] = max(out[i], row[ix])
					ix += sw
				}
			}
		}
		return
	}
	clear(out)
	for ky := kylo; ky < kyhi; ky++ {
		row := xp[(y0+ky*dh)*g.W : (y0+ky*dh+1)*g.W]
		for kx := 0; kx < g.KW; kx++ {
			ix := x0 + kx*dw
			for i := range out {
				out[i] += row[ix]
				ix += sw
			}
		}
	}
	rows := kyhi - kylo
	cnt := rows * g.KW
	if op.CountIncludePad {
		cnt = (min(y0+g.KH, g.H+g.Pads[2]) - y0) * g.KW
	}
	if cnt > 0 {
		inv := float32(cnt)
		for i := range out {
			out[i] /= inv
		}
	}
}

// GlobalPoolOp averages (or takes the max of) every plane.
type GlobalPoolOp struct {
	Max           bool
	Planes, Inner int
}

func buildGlobalPool(isMax bool) func(b *nodeBuild) (Op, error) {
	return func(b *nodeBuild) (Op, error) {
		x, err := b.need(0)
		if err != nil {
			return nil, err
		}
		if !x.dtype.IsFloat() {
			return nil, fmt.Errorf("input must be a float tensor")
		}
		shape, err := shapeinfer.GlobalPool(toInt64s(x.shape))
		if err != nil {
			return nil, err
		}
		b.setOut(0, toInts(shape), Float32)
		return &GlobalPoolOp{Max: isMax, Planes: x.shape[0] * x.shape[1], Inner: sizeOf(x.shape[2:])}, nil
	}
}

// Forward reduces every plane to one value.
func (op *GlobalPoolOp) Forward(c *Ctx, in, out []*Tensor) error {
	x, y := in[0].F, out[0].F
	if op.Inner == 1 {
		// 1x1 planes: the max of one value is the value, the mean 0 + the
		// value (as the loop below computes it: -0 becomes +0)
		if op.Max {
			copy(y[:op.Planes], x)
			return nil
		}
		for p, v := range x[:op.Planes] {
			y[p] = 0 + v
		}
		return nil
	}
	p := 0
	if !op.Max {
		p = meanPlanes4(x, y, op.Planes, op.Inner)
	}
	for ; p < op.Planes; p++ {
		row := x[p*op.Inner : (p+1)*op.Inner]
		if op.Max {
			m := float32(math.Inf(-1))
			for _, v := range row {
				m = max(m, v)
			}
			y[p] = m
			continue
		}
		var s float32
		for _, v := range row {
			s += v
		}
		y[p] = s / float32(op.Inner)
	}
	return nil
}

// meanPlanes4 sets y[p] to the mean of plane p (inner values of x) for the
// planes of whole groups of four and returns the number of planes done.
// Each plane is summed in order, as the one-plane loop does (the same
// bits), but four planes at once: four independent chains of additions
// instead of one chain whose latency bounds the loop (MobileNetV1's pool
// over 1024 planes of 7x7).
func meanPlanes4(x, y []float32, planes, inner int) int {
	n := planes / 4 * 4
	scale := float32(inner)
	for p := 0; p < n; p += 4 {
		r0 := x[p*inner : (p+1)*inner]
		r1 := x[(p+1)*inner : (p+2)*inner]
		r2 := x[(p+2)*inner : (p+3)*inner]
		r3 := x[(p+3)*inner : (p+4)*inner]
		var s0, s1, s2, s3 float32
		for j, v := range r0 {
			s0 += v
			s1 += r1[j]
			s2 += r2[j]
			s3 += r3[j]
		}
		y[p], y[p+1], y[p+2], y[p+3] = s0/scale, s1/scale, s2/scale, s3/scale
	}
	return n
}
