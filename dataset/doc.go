// Package dataset reads labelled images from disk and turns them into float32
// NCHW batches for a model's input. It knows nothing about models: the caller
// gives the input shape (channels, height, width) and the normalisation.
//
// Three kinds of source are supported, detected by Open:
//
//   - image folders: PNG and JPEG files, one sub-folder per class, or images
//     directly in the folder (unlabelled, label -1);
//   - IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed;
//   - NPY arrays of float32 or uint8 with shape (N,C,H,W) or (N,H,W), with an
//     optional labels file.
//
// A Source gives random access to samples and reads them from disk on demand.
// A Preprocess converts a sample to the model's shape (channel replication or
// RGB to gray, bilinear resize or centre crop, mean/std normalisation), and a
// Loader batches samples in a seeded, deterministic order into caller-owned
// buffers. An Augmenter applies seeded random transforms (shift, flip,
// mixup, cutmix) to such batches for distillation.
package dataset
