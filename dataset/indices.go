package dataset

import (
	"fmt"
	"math/rand/v2"
)

// Indices returns 0, 1, ..., n-1.
func Indices(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// newRand returns the generator used for every seeded choice in the package.
func newRand(seed int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), stream^0x9e3779b97f4a7c15))
}

// shuffled returns a copy of idx permuted by a generator for (seed, stream).
func shuffled(idx []int, seed int64, stream uint64) []int {
	out := append([]int(nil), idx...)
	r := newRand(seed, stream)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// First returns the first n entries of idx (all of them when n >= len(idx)).
func First(idx []int, n int) []int {
	if n < 0 {
		n = 0
	}
	return append([]int(nil), idx[:min(n, len(idx))]...)
}

// Random returns n entries of idx chosen at random for seed, in their
// original order (all of them when n >= len(idx)).
func Random(idx []int, n int, seed int64) []int {
	if n >= len(idx) {
		return append([]int(nil), idx...)
	}
	if n < 0 {
		n = 0
	}
	perm := newRand(seed, 1).Perm(len(idx))[:n]
	keep := make([]bool, len(idx))
	for _, p := range perm {
		keep[p] = true
	}
	out := make([]int, 0, n)
	for i, v := range idx {
		if keep[i] {
			out = append(out, v)
		}
	}
	return out
}

// SplitFraction divides idx into a training and a validation part, the
// validation part holding round(fraction*len(idx)) entries chosen at random
// for seed. Both parts keep the original order; they are disjoint and
// together hold every entry.
func SplitFraction(idx []int, fraction float64, seed int64) (train, val []int, err error) {
	if !(fraction >= 0 && fraction <= 1) {
		return nil, nil, fmt.Errorf("validation fraction %v must be in [0,1]", fraction)
	}
	nv := int(fraction*float64(len(idx)) + 0.5)
	perm := newRand(seed, 2).Perm(len(idx))
	isVal := make([]bool, len(idx))
	for _, p := range perm[:nv] {
		isVal[p] = true
	}
	train = make([]int, 0, len(idx)-nv)
	val = make([]int, 0, nv)
	for i, v := range idx {
		if isVal[i] {
			val = append(val, v)
		} else {
			train = append(train, v)
		}
	}
	return train, val, nil
}
