// Package checked multiplies and adds sizes and counts without wrapping.
// Every size lprconv computes from untrusted headers (IDX, NPY, images,
// ONNX dims) goes through Mul or Product, which report overflow, and every
// count it accumulates for display (parameters, MACs) through SatMul and
// SatAdd, which saturate at math.MaxInt64 instead of wrapping.
package checked

import (
	"math"
	"math/bits"
)

// Mul returns a·b and true, or 0 and false when a or b is negative or the
// exact product exceeds math.MaxInt64.
func Mul(a, b int64) (int64, bool) {
	if a < 0 || b < 0 {
		return 0, false
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, false
	}
	return int64(lo), true
}

// Product returns ∏ dims and true, or 0 and false when a dim is negative or
// the exact product exceeds math.MaxInt64. A zero dim makes the product 0
// whatever the other dims are (it is still false when another is negative).
// The empty product is 1.
func Product(dims ...int64) (int64, bool) {
	p, overflow := int64(1), false
	for _, d := range dims {
		if d < 0 {
			return 0, false
		}
		if overflow {
			continue
		}
		var ok bool
		if p, ok = Mul(p, d); !ok {
			overflow = true
		}
	}
	for _, d := range dims {
		if d == 0 {
			return 0, true
		}
	}
	if overflow {
		return 0, false
	}
	return p, true
}

// ProductInts is Product over ints.
func ProductInts(dims ...int) (int64, bool) {
	d := make([]int64, len(dims))
	for i, v := range dims {
		d[i] = int64(v)
	}
	return Product(d...)
}

// SatMul returns a·b for non-negative a and b, or math.MaxInt64 when the
// product does not fit (saturation). A negative operand counts as 0.
func SatMul(a, b int64) int64 {
	a, b = max(a, 0), max(b, 0)
	if p, ok := Mul(a, b); ok {
		return p
	}
	return math.MaxInt64
}

// SatProduct is the saturating ∏ dims (negative dims count as 0).
func SatProduct(dims ...int64) int64 {
	p := int64(1)
	for _, d := range dims {
		if d <= 0 {
			return 0
		}
	}
	for _, d := range dims {
		p = SatMul(p, d)
	}
	return p
}

// SatAdd returns a+b for non-negative a and b, or math.MaxInt64 when the
// sum does not fit. A negative operand counts as 0.
func SatAdd(a, b int64) int64 {
	a, b = max(a, 0), max(b, 0)
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// Saturated reports whether a count reached math.MaxInt64, the value SatMul
// and SatAdd return for a result that does not fit.
func Saturated(v int64) bool { return v == math.MaxInt64 }
