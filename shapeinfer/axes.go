package shapeinfer

import "fmt"

// NormAxis maps an axis in [-rank, rank) to [0, rank): a negative axis
// counts from the back, a = axis + rank.
func NormAxis(axis int64, rank int) (int, error) {
	r := int64(rank)
	if axis < -r || axis >= r {
		return 0, fmt.Errorf("axis %d is out of range for rank %d", axis, rank)
	}
	if axis < 0 {
		axis += r
	}
	return int(axis), nil
}

// NormAxes normalizes every axis with NormAxis and rejects a list that
// names the same axis twice (after normalization), as the ONNX
// specification leaves repeated axes undefined.
func NormAxes(axes []int64, rank int) ([]int, error) {
	out := make([]int, len(axes))
	seen := make([]bool, rank)
	for i, a := range axes {
		ax, err := NormAxis(a, rank)
		if err != nil {
			return nil, err
		}
		if seen[ax] {
			return nil, fmt.Errorf("axes %v repeat axis %d", axes, ax)
		}
		seen[ax] = true
		out[i] = ax
	}
	return out, nil
}

// Size returns the number of elements of a shape, the product of its dims
// (1 for a scalar).
func Size(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// ones returns k ones.
func ones(k int) []int64 {
	s := make([]int64, k)
	for i := range s {
		s[i] = 1
	}
	return s
}
