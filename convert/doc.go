// Package convert finds the low-rank pointwise residual (LPR) candidates of
// an ONNX model, plans their ranks, and rewrites the graph.
//
// It reads a model statically and never runs it: shapes come from static
// shape inference (InferShapes, a thin adapter over package shapeinfer,
// which the engine shares), which also evaluates the small integer shape
// subgraphs that exporters emit. Inspect summarizes layers,
// parameters and MACs; FindCandidates lists the square pointwise
// convolutions; FoldBatchNorm folds a BatchNormalization into the
// convolution before it; NewPlan decides every candidate (Selection owns
// layer selection: exclusions, explicit per-layer ranks and force, on top of
// svd.Policy's rank rule) and factors the replaced ones with package svd;
// Apply writes the LPR subgraphs.
package convert
