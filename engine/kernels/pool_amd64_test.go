//go:build amd64 && !purego

package kernels

// vectorPool reports whether MaxPool3x3 has a vector kernel here.
func vectorPool() bool { return cpu.avx512 }
