package kernels

import "fmt"

// MaxPool3x3 computes a 3x3 max pooling (stride 1 or 2 in both axes, no
// dilation, top and left pads of at most 2; the output size g.OH x g.OW
// sets the bottom and right padding) of planes planes: out[p][y][x] is the
// max over ky, kx < 3 of in[p][s*y-pt+ky][s*x-pl+kx], taps in the padding
// left out (-Inf when none is inside), with Go's max semantics (NaN in any
// tap gives NaN, max(-0, +0) = +0). g.C is ignored: in holds planes*H*W
// values, out planes*OH*OW. It reports false when this build or CPU has no
// vectorized kernel for g, or the planes hold a NaN; out is then
// unspecified and the caller computes it another way.
func MaxPool3x3(g *ConvGeom, planes int, in, out []float32) bool {
	hw, ohw := g.H*g.W, g.OH*g.OW
	if len(in) < planes*hw || len(out) < planes*ohw {
		panic(fmt.Sprintf("kernels: MaxPool3x3 buffers too small (in %d, out %d) for %d planes %+v", len(in), len(out), planes, *g))
	}
	return maxPool3x3Fast(g, planes, in, out)
}
