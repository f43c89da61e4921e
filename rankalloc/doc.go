// Package rankalloc chooses per-layer ranks that meet a parameter, MAC or
// measured-latency budget with the least predicted loss of fidelity.
//
// It measures each candidate layer's sensitivity, the loss caused by
// replacing that layer alone at a few ranks: on calibration images, the
// mean KL divergence of the model's softmax outputs from the original's
// (the model runs in package engine, with the layer's weight set to its
// low-rank reconstruction); without images, either the squared relative
// error of the outputs on seeded random inputs (MetricRandom, when asked
// for, and only where the outputs depend on those inputs: CheckRandom) or
// the squared relative weight reconstruction error from the layer's
// singular values. Losses between
// measured ranks are interpolated. Allocate then picks, for every layer,
// a rank or keeping it, so that the whole model's parameters (MACs, or
// latency predicted from a LatencyTable of measured times) stay within
// the budget and the sum of the layers' losses is least
// (an exact dynamic program over the discretized savings). The result is
// a convert.Selection (an explicit rank, or 0 with the reason, per layer)
// for the usual pipeline.
//
// The package measures models but parses no flags; convert stays free of
// model runs.
package rankalloc
