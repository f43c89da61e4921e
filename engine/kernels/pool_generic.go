//go:build purego || !amd64

package kernels

// maxPool3x3Fast has no vectorized version in this build.
func maxPool3x3Fast(g *ConvGeom, planes int, in, out []float32) bool { return false }
