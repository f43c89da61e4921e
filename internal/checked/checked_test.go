package checked

import (
	"math"
	"math/big"
	"testing"
)

// exact computes ∏ dims with big integers, the reference for Product.
func exact(dims []int64) *big.Int {
	p := big.NewInt(1)
	for _, d := range dims {
		p.Mul(p, big.NewInt(d))
	}
	return p
}

func TestProduct(t *testing.T) {
	const g = 1 << 32
	for _, tc := range []struct {
		dims []int64
		ok   bool
	}{
		{nil, true},
		{[]int64{3, 4, 5}, true},
		{[]int64{g, g, g}, false}, // 2^96: wraps to 0 in int64
		{[]int64{g, g}, false},    // 2^64: wraps to 0
		{[]int64{1, 3, 1 << 30, 1 << 30}, true},
		{[]int64{64, 3, 1 << 30, 1 << 30}, false}, // 3·2^66
		{[]int64{math.MaxInt64, 1}, true},
		{[]int64{math.MaxInt64, 2}, false},
		{[]int64{g, g, 0}, true}, // zero wins over overflow
		{[]int64{0, -1}, false},
		{[]int64{-2, -3}, false}, // positive product of negatives is still refused
		{[]int64{1 << 62, 2}, false},
		{[]int64{1 << 31, 1 << 31, 1}, true},
	} {
		got, ok := Product(tc.dims...)
		if ok != tc.ok {
			t.Errorf("Product(%v) ok = %v, want %v", tc.dims, ok, tc.ok)
			continue
		}
		if ok && big.NewInt(got).Cmp(exact(tc.dims)) != 0 {
			t.Errorf("Product(%v) = %d, want %s", tc.dims, got, exact(tc.dims))
		}
		// ProductInts agrees on the same dims.
		ints := make([]int, len(tc.dims))
		for i, d := range tc.dims {
			ints[i] = int(d)
		}
		if gi, oki := ProductInts(ints...); gi != got || oki != ok {
			t.Errorf("ProductInts(%v) = %d,%v, want %d,%v", ints, gi, oki, got, ok)
		}
	}
}

func TestSaturating(t *testing.T) {
	max := int64(math.MaxInt64)
	for _, tc := range []struct {
		name string
		got  int64
		want int64
	}{
		{"SatMul small", SatMul(6, 7), 42},
		{"SatMul overflow", SatMul(1<<40, 1<<40), max},
		{"SatMul negative", SatMul(-5, 7), 0},
		{"SatAdd small", SatAdd(2, 3), 5},
		{"SatAdd overflow", SatAdd(max, 1), max},
		{"SatAdd saturated stays", SatAdd(max, max), max},
		// The model: 1x3x2^30x2^30 output of a 3-input 1x1 conv.
		{"SatProduct 1x3x2^30x2^30x3", SatProduct(1, 3, 1<<30, 1<<30, 3), max},
		{"SatProduct fits", SatProduct(1, 64, 112, 112), 64 * 112 * 112},
		{"SatProduct zero dim", SatProduct(1<<40, 1<<40, 0), 0},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
	if !Saturated(SatMul(1<<40, 1<<40)) || Saturated(42) {
		t.Error("Saturated disagrees with SatMul")
	}
}
