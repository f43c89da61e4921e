// Package quantize rewrites an ONNX model (an onnxio ModelProto, compressed
// by lprconv or not) for lower-precision deployment:
//
//   - ToFloat16 stores the weights as IEEE 754 binary16 and computes in
//     float16 where ONNX Runtime's CPU provider has float16 kernels, keeping
//     float32 inputs and outputs with Cast nodes at the edges;
//   - Calibrate and ToInt8 (or Int8, both at once) write the QDQ format:
//     per-channel symmetric int8 weights, per-tensor asymmetric 8-bit
//     activations calibrated on data, int32 biases, as QuantizeLinear and
//     DequantizeLinear nodes (opset 13) that ONNX Runtime fuses into
//     QLinearConv, QLinearAdd and friends.
//
// The activation quantizer with scale s and zero point z maps a real value
// x to q = clamp(round(x/s) + z, qmin, qmax) and back to x̂ = s·(q − z); a
// weight channel c uses s_c = max|W_c| / 127 and z = 0, and a bias uses
// s = s_x·s_c and z = 0 in int32, as ONNX Runtime's QLinearConv expects.
package quantize
