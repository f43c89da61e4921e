package engine

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
