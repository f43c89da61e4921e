// Package svd factorizes pointwise-convolution weights for the low-rank
// pointwise residual (LPR) module: W ≈ B A + R, with A of shape r x C_in,
// B of shape C_out x r and a residual R that is zero, the identity, a
// per-channel diagonal, or a depthwise KxK convolution whose centre tap is that
// diagonal.
//
// Weights arrive as row-major float32 slices (the layout of an ONNX
// [C_out, C_in, 1, 1] initializer). Arithmetic is float64 on gonum, except
// the block products that steer the subspace search, which run in float32
// (gonum's blas32, or a faster GEMM given as Options.Sgemm) unless
// Options.Precise is set: the off-diagonal Gram entries, the filter and
// Rayleigh–Ritz products, the Cholesky QR of the cheap diag alternation
// rounds and, when the fit is far from exact (relative error >= 0.1), the
// projection onto the subspace found. Traces, Ritz problems and every reported
// error are float64, and the kept vectors are orthonormal in float64.
//
// The truncated SVD is computed from the Gram matrix M Mᵀ (or Mᵀ M, the smaller
// one) by Chebyshev-filtered subspace iteration with a Rayleigh–Ritz step,
// which needs only matrix products and small eigenproblems. The low-rank term
// is then the exact orthogonal projection of M onto the computed subspace, so
// its error is the best one within that subspace and approaches the
// Eckart–Young optimum as the subspace converges. Small problems use gonum's
// dense symmetric eigensolver directly.
//
// The package also holds the data-aware variant (minimizing ‖(W − R − B A) X‖
// for calibration activations X given through their second-moment matrix
// X Xᵀ) and the rank policies that decide which layers to replace.
package svd
