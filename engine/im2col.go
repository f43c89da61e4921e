package engine

import "github.com/lprconv/lprconv/engine/kernels"

// im2colLD unfolds the g.C input planes of in into col, one row per
// (channel, ky, kx) starting ld floats apart, and one column per output
// pixel; taps in the padding are 0.
func im2colLD(g kernels.ConvGeom, in, col []float32, ld int) {
	ohw := g.OH * g.OW
	row := 0
	for c := 0; c < g.C; c++ {
		plane := in[c*g.H*g.W : (c+1)*g.H*g.W]
		for ky := 0; ky < g.KH; ky++ {
			for kx := 0; kx < g.KW; kx++ {
				dst := col[row*ld : row*ld+ohw]
				row++
				// output columns whose input x lies inside [0, W)
				off := kx*g.Dilations[1] - g.Pads[1]
				lo, hi := validRange(off, g.Strides[1], g.W, g.OW)
				for oy := 0; oy < g.OH; oy++ {
					d := dst[oy*g.OW : (oy+1)*g.OW]
					iy := oy*g.Strides[0] - g.Pads[0] + ky*g.Dilations[0]
					if iy < 0 || iy >= g.H || lo >= hi {
						clear(d)
						continue
					}
					clear(d[:lo])
					clear(d[hi:])
					src := plane[iy*g.W : (iy+1)*g.W]
					ix := lo*g.Strides[1] + off
					if g.Strides[1] == 1 {
						copy(d[lo:hi], src[ix:ix+hi-lo])
						continue
					}
					for ox := lo; ox < hi; ox++ {
						d[ox] = src[ix]
						ix += g.Strides[1]
					}
				}
			}
		}
	}
}

// validRange returns the output positions [lo, hi) for which
// o*stride + off lies in [0, w).
func validRange(off, stride, w, ow int) (lo, hi int) {
	if off < 0 {
		lo = (-off + stride - 1) / stride
	}
	if w-off > 0 {
		hi = (w - off + stride - 1) / stride
	}
	hi = min(hi, ow)
	lo = min(lo, hi)
	return lo, hi
}
