// Package finetune recovers the accuracy of a compressed model by
// distillation from the original: the original model is the teacher, the
// LPR model the student, and only the student's chosen tensors learn.
//
// It owns the distillation losses (KL divergence at a temperature, plus
// cross-entropy when labels exist, or MSE on logits), the optimizers (Adam
// with decoupled weight decay, SGD with momentum and Nesterov), the
// learning-rate schedule (linear warm-up then cosine decay), the choice of
// trainable tensors, checkpoints that make long runs resumable, and the
// data-aware initialization that fits LPR factors to each layer's
// calibration activations (Calibrate, then svd.FactorizeData), optionally
// followed by SequentialInit, which refits the layers one at a time in
// order to the teacher's outputs given the compressed student's inputs. The
// objective can add feature mimicking (Options.Match: the penultimate
// feature map, every LPR module's output, or named values), weigh the
// channels of those values by the teacher's output Fisher information
// (ChannelFisher, Options.ChannelWeights), and train on augmented inputs
// (Options.Augment); Reconstruct is an optional first
// stage on the module outputs alone; RecipeFor picks the schedule for an
// amount of data. Models run through package engine; batches come from any
// dataset.Batches source, such as a
// dataset.Loader. It never parses ONNX bytes.
package finetune
