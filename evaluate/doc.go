// Package evaluate measures models on data: top-1/top-5 accuracy against
// labels, fidelity of one model's logits to another's (top-1 agreement,
// max-abs and relative difference, cosine similarity), and throughput. It
// runs models through package engine and reads batches from package
// dataset; it formats nothing.
package evaluate
