package kernels

// activeKernel is the GEMM micro-kernel chosen for this CPU (read-only).
var activeKernel = genericKernel
