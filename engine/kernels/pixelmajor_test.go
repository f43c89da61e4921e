package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestPointwisePixelMajor checks PointwisePixelMajor against Conv2D (the
// channel-major GEMM with the same micro-kernel: the same bits) and a
// float64 reference, for every micro-kernel of this machine, one and two
// threads, planes with and without partial row panels, depths over one and
// several cache blocks, channel counts that do and do not fill whole lane
// panels, and each kind of epilogue.
func TestPointwisePixelMajor(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	cases := []struct{ hw, cin, cout int }{
		{49, 40, 64},
		{196, 600, 96},
		{4, 7, 32},
		{130, 33, 40},
		{9, 1100, 16},
		{2, 3, 5},
	}
	for _, kern := range kernelsAvailable() {
		for _, threads := range []int{1, 2} {
			ctx := NewContext(threads)
			defer ctx.Close()
			ctx.kern = kern
			for _, tc := range cases {
				x, w, bias := randSlice(r, tc.hw*tc.cin), randSlice(r, tc.cout*tc.cin), randSlice(r, tc.cout)
				g, err := NewConvGeom(tc.cin, tc.hw, 1, 1, 1, [2]int{1, 1}, [4]int{}, [2]int{1, 1})
				if err != nil {
					t.Fatal(err)
				}
				ref := naiveConv(g, 1, tc.cout, 1, x, w, bias)
				pw := packWeightsT(w, tc.cout, tc.cin, kern.nr)
				eps := []Epilogue{
					{},
					ReluEpilogue(bias, nil),
					{RowBias: bias, Clip: true, Min: -0.5, Max: 0.75},
				}
				for ei, ep := range eps {
					name := fmt.Sprintf("%s/t%d/hw%d_cin%d_cout%d/ep%d", kern.name, threads, tc.hw, tc.cin, tc.cout, ei)
					want := make([]float32, tc.cout*tc.hw)
					ctx.Conv2D(g, 1, tc.cout, x, w, want, ep)
					got := make([]float32, len(want))
					for i := range got {
						got[i] = float32(math.NaN()) // every value must be written
					}
					if !ctx.PointwisePixelMajor(tc.hw, x, pw, got, ep) {
						t.Fatalf("%s: weights packed for nr=%d refused", name, kern.nr)
					}
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%s: out[%d] = %v, Conv2D gives %v", name, i, got[i], want[i])
						}
						v := ref[i]
						if ei == 0 {
							v -= float64(bias[i/tc.hw])
						}
						if ep.Clip {
							v = min(max(v, float64(ep.Min)), float64(ep.Max))
						}
						if !closeTo(got[i], v, math.Sqrt(float64(tc.cin))) {
							t.Fatalf("%s: out[%d] = %v, want %v", name, i, got[i], v)
						}
					}
				}
			}
			other := packWeightsT(make([]float32, 4), 2, 2, kern.nr+1)
			if ctx.PointwisePixelMajor(1, make([]float32, 2), other, make([]float32, 2), Epilogue{}) {
				t.Errorf("%s: weights packed for nr=%d accepted", kern.name, kern.nr+1)
			}
		}
	}
}

// TestPixelMajorPays checks the rule choosing the pixel-major path for
// micro-kernels with and without the 16-column edge kernels.
func TestPixelMajorPays(t *testing.T) {
	edge := &[3]microKernel{}
	wide := &kernelSpec{mr: 8, nr: 32, edge: edge} // AVX-512 8x32
	narrow := &kernelSpec{mr: 6, nr: 16}           // AVX2 6x16
	cases := []struct {
		spec  *kernelSpec
		hw, m int
		want  bool
	}{
		{wide, 49, 1024, true},  // 56 rows against 64 lanes
		{wide, 196, 512, true},  // 200 against 208
		{wide, 49, 1000, false}, // channels do not fill lane panels
		{wide, 16, 64, false},   // 16 against 16 (edge kernel)
		{wide, 64, 64, false},   // whole lane panels
		{wide, 25, 64, false},   // 32 against 32
		{wide, 4, 64, true},     // 8 against 16
		{wide, 1, 64, false},    // a single pixel is a GEMV
		{wide, 300, 64, false},  // beyond the measured planes
		{narrow, 49, 64, true},  // 54 against 64
		{narrow, 196, 64, true}, // 198 against 208
	}
	for _, tc := range cases {
		if got := pixelMajorPays(tc.spec, tc.hw, tc.m); got != tc.want {
			t.Errorf("pixelMajorPays(mr %d nr %d, hw %d, m %d) = %v, want %v", tc.spec.mr, tc.spec.nr, tc.hw, tc.m, got, tc.want)
		}
	}
}
