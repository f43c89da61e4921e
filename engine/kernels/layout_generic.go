//go:build purego || !amd64

package kernels

// dwTinyCNTask has no use in this build.
type dwTinyCNTask struct{}

// dwTinyCN has no vectorized version in this build.
func (ctx *Context) dwTinyCN(g *ConvGeom, n int, in, weight, bias, out []float32, lo, hi float32) bool {
	return false
}

// dwTinyLayout reports that this build has no kernel for tiny planes.
func dwTinyLayout(g *ConvGeom) (per, groups, last int, ok bool) { return 0, 0, 0, false }

// scaleRowsFast has no vectorized version in this build.
func scaleRowsFast(dst []float32, ldd int, src []float32, lds, rows, cols int, d, b []float32) bool {
	return false
}
