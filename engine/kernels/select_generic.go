//go:build purego || !amd64

package kernels

// bestKernel is the GEMM micro-kernel for this build: the portable one.
var bestKernel = &genericKernel

// kernelsAvailable lists every GEMM micro-kernel this CPU can run.
func kernelsAvailable() []*kernelSpec { return []*kernelSpec{&genericKernel} }
