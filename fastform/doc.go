// Package fastform rewrites a model's graph into forms that ONNX Runtime
// executes faster, without changing what the graph computes. It runs on the
// model lprconv writes, after fine-tuning and shape folding (package
// shapefold), and knows two patterns:
//
//   - Channel shuffle as one Concat. ShuffleNet exporters write the shuffle
//     of g tensors x₁…x_g of c channels each as Concat(axis 1) → Reshape to
//     [N, g, c, H, W] → Transpose(0, 2, 1, 3, 4), i.e. two copies of the
//     data. The transposed tensor is T[n, j, i, h, w] = x_i[n, j, h, w], which
//     is exactly Concat(axis 2) of the x_i unsqueezed at axis 2: one copy.
//     The values are moved, never computed, so outputs are bit-identical.
//     ONNX Runtime spends one full-tensor copy less per shuffle (16 on
//     ShuffleNetV2).
//
//   - A diag residual folded into the producer of its input. An LPR module
//     with a diag residual computes y = U(V x) + D x + b, and writes D x as a
//     group-C 1×1 Conv: a pass over memory of its own. Where x = P(z) comes
//     from a Conv or BatchNormalization P whose output goes only into the
//     module, every d_c is non-zero, and every rescaled weight stays a
//     finite, normal float32, the module is rewritten with
//     x̃ = D x (P's weight rows and bias, or its scale and shift, times d_c)
//     and V' = V D⁻¹ (column c of V divided by d_c):
//
//     U(V' x̃) + x̃ + b = U(V D⁻¹ D x) + D x + b = y,
//
//     so the residual is the module's input itself, which ONNX Runtime
//     adds inside the U convolution (its fused Conv + Sum). The outputs
//     agree to float32 round-off; x̃ differs from x, but nothing else reads
//     it. ShuffleNetV2's second pointwise convolution of every branch (after
//     a depthwise convolution and its BatchNorm, with no activation between)
//     has this form. Where P is a ReLU or LeakyReLU of such a Conv or
//     BatchNormalization and every d_c > 0, the scale passes through the
//     activation (act(d·a) = d·act(a) for d > 0) and the rows of the layer
//     before it are scaled instead: MobileNet's pointwise convolutions
//     follow a ReLU, and package chanperm relabels channels so that their
//     d come out positive. A negative d_c cannot pass a ReLU; such a module
//     keeps its residual.
//
//   - Narrow depthwise chains padded. ONNX Runtime runs a convolution in its
//     blocked (NCHWc) layout only when its channel counts are multiples of
//     4 (PadMultiple); ShuffleNetV2 x1.0's 58-channel branches (pointwise →
//     depthwise → pointwise) run outside it, their depthwise convolutions
//     several times slower. The inner width of a group-1 Conv → group-C
//     Conv → group-1 Conv chain (with Relu or BatchNormalization between)
//     is padded with zero channels: zero weight rows and bias in the first,
//     zero channels in the depthwise one, zero input columns in the last.
//     The padded channels stay zero, so every original output is the same
//     sum with exact zeros added; the extra multiply-adds are counted. This
//     assumes finite activations: an infinite value entering the chain
//     would make a padded channel 0·∞ = NaN, which the zero columns then
//     spread to every output (the unpadded model is already non-finite
//     there in all but contrived cases).
//
// Rewrite applies all three and says what it did in a Report, also recorded in
// the model's metadata under MetadataKey.
package fastform
