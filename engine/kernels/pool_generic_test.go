//go:build purego || !amd64

package kernels

// vectorPool reports whether MaxPool3x3 has a vector kernel here.
func vectorPool() bool { return false }
