// Package torchexport hands an ONNX model to PyTorch and takes the trained
// tensors back.
//
// Export writes a folder of Python: model.py, a torch.nn.Module generated
// node by node from the ONNX graph (onnxops.py holds the operator
// semantics), that reads its weights from the ONNX file copied next to it;
// distill.py, lprconv's distillation recipe for torchrun and
// DistributedDataParallel; and a README. Every float initializer that
// lprconv's fine-tuning may train becomes an nn.Parameter, every other
// initializer a buffer, and Constant node values non-persistent buffers, so
// that state_dict() holds exactly the initializers. Attribute names are
// mangled ONNX names (see Mangle); names.json and model.py's ONNX_NAMES
// keep the one-to-one map.
//
// distill.py writes the trained parameters as a safetensors file keyed by
// ONNX initializer names (ReadSafetensors parses it); Import writes them
// back into the ONNX model by name, and Verify checks the result against
// the probe outputs that distill.py stores in the same file.
package torchexport
