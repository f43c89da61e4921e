// Package shapefold removes a model's run-time shape arithmetic: the
// Shape → Gather → Unsqueeze → Div → Concat chains that exporters (PyTorch's
// x.size() calls, chunk and view in ShuffleNetV2) leave in a graph to
// compute Reshape targets and Slice bounds while the graph runs. ONNX
// Runtime cannot fold them when the batch dimension is dynamic, and on
// ShuffleNetV2 they are three quarters of the nodes and about a tenth of
// the batch-1 latency.
//
// Fold infers the graph's shapes and small integer values (package
// shapeinfer) with every dynamic input dimension set to each of several
// sizes (FoldSizes). An integer tensor computed by a node is batch
// independent when its value is the same at every size; it becomes an
// initializer. A Reshape target that still depends on the dynamic sizes is
// rewritten as a constant when every output dimension is, at every size,
// either the same constant, or equal to the input's dimension at the same
// position (written 0, which ONNX's Reshape copies from the input when
// allowzero is 0), with at most one remaining dimension written −1 (ONNX
// infers it from the element count). Nodes whose outputs are then unused
// are removed.
//
// The rewrite changes no floating-point computation: only integer shape
// values are replaced, by the values the removed nodes would compute. A
// value equal at the FoldSizes 2, 3, 67 and 1031 is taken as constant.
// That is exact for every polynomial of degree at most 3 in a dynamic size
// (it takes one value at four points only when constant) and for floor
// divisions of one by any constant up to 1031 (N/k is 0 at N = 2 and at
// least 1 at N = 1031), which covers what CNN exporters emit. When the inputs have
// more than one distinct dynamic dimension, two more samples give each its
// own size (primes from 5 and from 101), so that a dimension is never
// written as a copy of another that only had the same size. Graphs with
// subgraphs (If, Loop, Scan) are left alone.
package shapefold
