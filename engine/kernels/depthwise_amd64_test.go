//go:build amd64 && !purego

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestDepthwiseFlatBits checks that the flat stride-1 3x3 kernel gives the
// same bits as the row kernel (the same sums in the same order) on planes
// of every width class: below 16, not dividing 16, above 16 and not a
// multiple of it, single rows and columns, with a last partial vector and
// without, with and without clamping, for several planes per call; and
// that it writes nothing past each plane.
func TestDepthwiseFlatBits(t *testing.T) {
	if !cpu.avx512 {
		t.Skip("no AVX-512 on this CPU: the flat kernel is not used")
	}
	r := rand.New(rand.NewPCG(41, 42))
	ctx := NewContext(1)
	defer ctx.Close()
	s := &ctx.scratch[0]
	for _, hw := range [][2]int{{1, 1}, {1, 16}, {1, 33}, {2, 8}, {4, 4}, {7, 7}, {14, 14}, {5, 13}, {13, 5}, {17, 19}, {28, 28}, {21, 1}, {56, 56}, {31, 37}} {
		h, w := hw[0], hw[1]
		g, err := NewConvGeom(1, h, w, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1})
		if err != nil {
			t.Fatal(err)
		}
		flat := ctx.dwFlatMasks(&g)
		if flat == nil {
			t.Fatalf("%dx%d: no flat masks", h, w)
		}
		const count = 3
		plane := h * w
		inStride, outStride := plane+5, plane+3
		in := randSlice(r, count*inStride)
		wt := randSlice(r, 9)
		bias := float32(r.NormFloat64())
		for _, clip := range []bool{false, true} {
			name := fmt.Sprintf("%dx%d clip=%v", h, w, clip)
			want := randSlice(r, count*outStride+16)
			got := append([]float32(nil), want...)
			dw3x3Forward(s, &g, nil, in, wt, bias, want, count, inStride, outStride, clip, 0, 1.5)
			dw3x3Forward(s, &g, flat, in, wt, bias, got, count, inStride, outStride, clip, 0, 1.5)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s: value %d (plane %d, output %d) = %g, row kernel gives %g", name, i, i/outStride, i%outStride, got[i], want[i])
				}
			}
		}
	}
}
