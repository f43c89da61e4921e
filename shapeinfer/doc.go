// Package shapeinfer is lprconv's one static shape and constant inference
// for ONNX operators: the rules that map input shapes (and constant
// arguments such as axes, starts or a Reshape target) to output shapes, as
// the ONNX operator specification defines them.
//
// It has two layers. The rule functions (NormAxis, Broadcast, Reshape,
// Slice, NewWindow, Reduce, ...) take shapes as []int64 and return output
// shapes or the derived geometry (a Slice's start and step per axis, a
// window's effective pads); package engine calls them when it compiles a
// node and package convert through Infer. Infer walks a model's main graph
// without running it and applies the same rules node by node, evaluating
// the small integer and float tensors of shape arithmetic (Shape, Gather,
// Add, Div, Cast, Concat, ...) so that Reshape and Slice arguments computed
// at run time resolve.
//
// Where the copies this package replaces disagreed, the ONNX specification
// decides: a Slice with a negative step clamps its start to [0, d-1] after
// adding d to a negative start, and its end to [-1, d-1]; Flatten's axis is
// in [-r, r]; Split without sizes needs an evenly divisible axis unless
// num_outputs is given; pads must not be negative; repeated axes are an
// error wherever an operator takes a list of axes.
//
// The package depends only on onnxio; convert and engine depend on it.
package shapeinfer
