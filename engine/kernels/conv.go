package kernels

import "fmt"

// ConvGeom is the geometry of a 2-D convolution over one NCHW image.
// Pads follow ONNX order [top, left, bottom, right]; strides and dilations
// are [height, width]. OH and OW are the output sizes (see OutSize).
type ConvGeom struct {
	C, H, W   int    // input channels, height, width
	KH, KW    int    // kernel height and width
	Strides   [2]int // stride along height, width (>= 1)
	Pads      [4]int // top, left, bottom, right (>= 0)
	Dilations [2]int // dilation along height, width (>= 1)
	OH, OW    int    // output height and width
}

// NewConvGeom fills a ConvGeom and computes its output size. It returns an
// error when a stride or dilation is below 1, a pad is negative or the
// output would be empty.
func NewConvGeom(c, h, w, kh, kw int, strides [2]int, pads [4]int, dilations [2]int) (ConvGeom, error) {
	g := ConvGeom{C: c, H: h, W: w, KH: kh, KW: kw, Strides: strides, Pads: pads, Dilations: dilations}
	if c < 1 || h < 1 || w < 1 || kh < 1 || kw < 1 {
		return g, fmt.Errorf("conv geometry: sizes must be positive (C=%d H=%d W=%d K=%dx%d)", c, h, w, kh, kw)
	}
	for i, s := range strides {
		if s < 1 {
			return g, fmt.Errorf("conv geometry: stride[%d]=%d must be >= 1", i, s)
		}
		if dilations[i] < 1 {
			return g, fmt.Errorf("conv geometry: dilation[%d]=%d must be >= 1", i, dilations[i])
		}
	}
	for i, p := range pads {
		if p < 0 {
			return g, fmt.Errorf("conv geometry: pad[%d]=%d must be >= 0", i, p)
		}
	}
	// the spans left after the first window position; negative when the
	// window does not fit (division would round them up to 0)
	sh := h + pads[0] + pads[2] - dilations[0]*(kh-1) - 1
	sw := w + pads[1] + pads[3] - dilations[1]*(kw-1) - 1
	g.OH, g.OW = sh/strides[0]+1, sw/strides[1]+1
	if sh < 0 || sw < 0 {
		return g, fmt.Errorf("conv geometry: kernel %dx%d (dilations %v) larger than padded input %dx%d", kh, kw, dilations, h+pads[0]+pads[2], w+pads[1]+pads[3])
	}
	return g, nil
}

// colRange returns the output columns [lo, hi) whose input column
// ox*stride - pad + off lies inside [0, w).
func colRange(off, stride, pad, w, ow int) (lo, hi int) {
	// need 0 <= ox*stride - pad + off < w
	x0 := pad - off
	lo = 0
	if x0 > 0 {
		lo = (x0 + stride - 1) / stride
	}
	hi = 0
	if w+x0 > 0 {
		hi = (w + x0 + stride - 1) / stride
	}
	hi = min(hi, ow)
	lo = min(lo, hi)
	return lo, hi
}

// tapRow returns the input row read by output row oy at kernel row ky,
// oy*sh - pt + ky*dh, and whether it lies inside the plane.
func (g *ConvGeom) tapRow(oy, ky int) (iy int, ok bool) {
	iy = oy*g.Strides[0] - g.Pads[0] + ky*g.Dilations[0]
	return iy, iy >= 0 && iy < g.H
}

// tapCols returns the output columns [xlo, xhi) whose input column at
// kernel column kx lies inside the row, and ix, the input column of xlo
// (the next ones follow every sw columns).
func (g *ConvGeom) tapCols(kx int) (xlo, xhi, ix int) {
	sw, off := g.Strides[1], kx*g.Dilations[1]
	xlo, xhi = colRange(off, sw, g.Pads[1], g.W, g.OW)
	return xlo, xhi, xlo*sw - g.Pads[1] + off
}

// eachColRow calls fn for every row of the column matrix in order: row
// (c*KH+ky)*KW+kx of channel c, kernel row ky and kernel column kx, with
// the output columns [xlo, xhi) and input column ix of tapCols(kx).
func (g *ConvGeom) eachColRow(fn func(row, c, ky, xlo, xhi, ix int)) {
	row := 0
	for c := 0; c < g.C; c++ {
		for ky := 0; ky < g.KH; ky++ {
			for kx := 0; kx < g.KW; kx++ {
				xlo, xhi, ix := g.tapCols(kx)
				fn(row, c, ky, xlo, xhi, ix)
				row++
			}
		}
	}
}

// Im2col writes the column matrix of one image: col has C*KH*KW rows and
// OH*OW columns, row (c*KH+ky)*KW+kx holding in[c, oy*sh-pt+ky*dh,
// ox*sw-pl+kx*dw] (0 where that falls into padding). in holds C*H*W values.
// Then Conv(in, weight[Cout, C, KH, KW]) = weight (Cout x C*KH*KW) * col.
func Im2col(g ConvGeom, in, col []float32) { Im2colLD(g, in, col, g.OH*g.OW) }

// Im2colLD is Im2col with the rows of col ld >= OH*OW values apart, so
// that the columns of several images can sit side by side in one matrix.
func Im2colLD(g ConvGeom, in, col []float32, ld int) { Im2colRows(g, in, col, ld, 0, g.OH) }

// Im2colRows is Im2colLD for the output rows [oy0, oy1) only: column
// (oy-oy0)*OW+ox of col holds what column oy*OW+ox of Im2col does, so that
// a large image can be unfolded and multiplied a band of rows at a time
// (the band's column matrix stays in cache).
func Im2colRows(g ConvGeom, in, col []float32, ld, oy0, oy1 int) {
	hw := (oy1 - oy0) * g.OW
	rows := g.C * g.KH * g.KW
	if oy0 < 0 || oy1 > g.OH || oy0 > oy1 {
		panic(fmt.Sprintf("kernels: Im2colRows rows [%d, %d) outside the %d output rows", oy0, oy1, g.OH))
	}
	if ld < hw || len(in) < g.C*g.H*g.W || len(col) < (rows-1)*ld+hw {
		panic(fmt.Sprintf("kernels: Im2col buffers too small (in %d, col %d, ld %d) for %+v", len(in), len(col), ld, g))
	}
	if hw == 0 || im2colFast(&g, in, col, ld, oy0, oy1) {
		return
	}
	sw := g.Strides[1]
	g.eachColRow(func(row, c, ky, xlo, xhi, ix0 int) {
		plane := in[c*g.H*g.W : (c+1)*g.H*g.W]
		dst := col[row*ld : row*ld+hw]
		for oy := oy0; oy < oy1; oy++ {
			d := dst[(oy-oy0)*g.OW : (oy-oy0+1)*g.OW]
			iy, ok := g.tapRow(oy, ky)
			if !ok || xlo >= xhi {
				// the row, or every tap of it, lies in the padding
				clear(d)
				continue
			}
			clear(d[:xlo])
			clear(d[xhi:])
			src := plane[iy*g.W:]
			ix := ix0
			if sw == 1 {
				copy(d[xlo:xhi], src[ix:ix+xhi-xlo])
				continue
			}
			if sw == 2 {
				gatherStride2(d[xlo:xhi], src[ix:g.W])
				continue
			}
			for ox := xlo; ox < xhi; ox++ {
				d[ox] = src[ix]
				ix += sw
			}
		}
	})
}

// Col2im is the adjoint of Im2col: it overwrites im (C*H*W values) with the
// sum of every col entry into the input pixel it was read from. With
// col = weightᵀ * dOut this is the input gradient of a convolution.
func Col2im(g ConvGeom, col, im []float32) {
	hw := g.OH * g.OW
	if len(im) < g.C*g.H*g.W || len(col) < g.C*g.KH*g.KW*hw {
		panic(fmt.Sprintf("kernels: Col2im buffers too small (col %d, im %d) for %+v", len(col), len(im), g))
	}
	clear(im[:g.C*g.H*g.W])
	sw := g.Strides[1]
	g.eachColRow(func(row, c, ky, xlo, xhi, ix0 int) {
		if xlo >= xhi {
			return
		}
		plane := im[c*g.H*g.W : (c+1)*g.H*g.W]
		src := col[row*hw : (row+1)*hw]
		for oy := 0; oy < g.OH; oy++ {
			iy, ok := g.tapRow(oy, ky)
			if !ok {
				continue
			}
			s := src[oy*g.OW+xlo : oy*g.OW+xhi]
			d := plane[iy*g.W:]
			ix := ix0
			if sw == 1 {
				d = d[ix : ix+len(s)]
				for j, v := range s {
					d[j] += v
				}
				continue
			}
			for _, v := range s {
				d[ix] += v
				ix += sw
			}
		}
	})
}
