package engine

// advance moves the multi-index idx over dims one step, last index
// fastest, wrapping to zero at the end, and returns off moved by the
// matching strides. Loops over strided rows use it to step to the next row.
func advance(idx, dims, strides []int, off int) int {
	for d := len(idx) - 1; d >= 0; d-- {
		idx[d]++
		off += strides[d]
		if idx[d] < dims[d] {
			return off
		}
		off -= strides[d] * dims[d]
		idx[d] = 0
	}
	return off
}
