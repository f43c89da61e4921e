package kernels

// dw3x3Geom reports whether g is a 3x3 depthwise geometry that the
// vectorized kernels handle: no dilation, equal strides of 1 or 2, and top
// and left pads of at most 2.
func dw3x3Geom(g *ConvGeom) bool {
	return g.KH == 3 && g.KW == 3 && g.Dilations == [2]int{1, 1} &&
		g.Strides[0] == g.Strides[1] && (g.Strides[0] == 1 || g.Strides[0] == 2) &&
		g.Pads[0] <= 2 && g.Pads[1] <= 2
}

// dwPadded describes a zero-padded plane for the 3x3 input-gradient
// kernel: rows rows of ldp values, with slack after the last row.
type dwPadded struct {
	rows, ldp int
}

// dwPaddedGrad returns the layout of the zero-upsampled, padded output
// gradient used to compute the input gradient as a stride-1 convolution
// with the flipped kernel.
func dwPaddedGrad(g *ConvGeom) dwPadded {
	return dwPadded{rows: g.H + 2, ldp: roundUp(g.W, 16) + 3}
}

// padGrad copies dout (oh x ow) into q at rows oy*s + 2 - top and columns
// ox*s + 2 - left. q must already be zero elsewhere (see padBuffer).
func padGrad(q []float32, d dwPadded, dout []float32, g *ConvGeom) {
	s := g.Strides[0]
	for oy := 0; oy < g.OH; oy++ {
		r := oy*s + 2 - g.Pads[0]
		if r >= d.rows {
			break
		}
		row := q[r*d.ldp : (r+1)*d.ldp]
		src := dout[oy*g.OW : (oy+1)*g.OW]
		c := 2 - g.Pads[1]
		if s == 1 {
			n := min(len(src), d.ldp-c)
			copy(row[c:c+n], src[:n])
			continue
		}
		for _, v := range src {
			if c >= d.ldp {
				break
			}
			row[c] = v
			c += s
		}
	}
}

// padBuffer is a zero-padded plane buffer that stays valid across planes of
// one geometry: the copies write the same positions for every plane, so the
// padding is cleared only when the geometry changes.
type padBuffer struct {
	buf []float32
	key ConvGeom
	ok  bool
}

// get returns a buffer of d.size() values whose padding is zero for g.
func (b *padBuffer) get(g *ConvGeom, d dwPadded) []float32 {
	if !b.ok || b.key != *g || len(b.buf) != d.size() {
		b.buf = grow(b.buf, d.size())
		clear(b.buf)
		b.key, b.ok = *g, true
	}
	return b.buf
}

// size is the number of values to allocate, slack included.
func (d dwPadded) size() int { return d.rows*d.ldp + 64 }
