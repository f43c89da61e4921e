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

// TestDepthwiseFlatChansBits checks that the flat kernel over consecutive
// channels (each its own filter and bias) gives the bits of the row kernel
// run channel by channel, that DepthwiseConv2DEx with one image (which
// uses it on planes of more than 16 values, bias or none, split over
// threads or not) does too, and that
// nothing past each plane is written.
func TestDepthwiseFlatChansBits(t *testing.T) {
	if !cpu.avx512 {
		t.Skip("no AVX-512 on this CPU: the flat kernel is not used")
	}
	r := rand.New(rand.NewPCG(43, 44))
	for _, threads := range []int{1, 2} {
		ctx := NewContext(threads)
		s := &ctx.scratch[0]
		for _, c := range []struct{ ch, h, w int }{{1, 7, 7}, {5, 14, 14}, {17, 7, 7}, {3, 5, 13}, {40, 5, 4}, {2, 28, 28}, {9, 1, 17}} {
			g, err := NewConvGeom(c.ch, c.h, c.w, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1})
			if err != nil {
				t.Fatal(err)
			}
			flat := ctx.dwFlatMasks(&g)
			plane := c.h * c.w
			in := randSlice(r, c.ch*(plane+3))
			wt := randSlice(r, c.ch*9)
			bias := randSlice(r, c.ch)
			for _, clip := range []bool{false, true} {
				name := fmt.Sprintf("%d threads %dx%dx%d clip=%v", threads, c.ch, c.h, c.w, clip)
				want := randSlice(r, c.ch*(plane+2))
				got := append([]float32(nil), want...)
				for ch := 0; ch < c.ch; ch++ {
					dw3x3Forward(s, &g, nil, in[ch*(plane+3):], wt[ch*9:], bias[ch], want[ch*(plane+2):], 1, 0, 0, clip, -0.5, 1.5)
				}
				if !dw3x3FlatChans(&g, flat, in, wt, bias, got, c.ch, plane+3, plane+2, clip, -0.5, 1.5) {
					t.Fatalf("%s: flat kernel not run", name)
				}
				sameBits(t, name, got, want)
				// the dense planes through DepthwiseConv2DEx, with and without a bias
				dense := make([]float32, c.ch*plane)
				for ch := 0; ch < c.ch; ch++ {
					copy(dense[ch*plane:], in[ch*(plane+3):ch*(plane+3)+plane])
				}
				for _, b := range [][]float32{bias, nil} {
					var bv float32
					wantD := make([]float32, c.ch*plane)
					for ch := 0; ch < c.ch; ch++ {
						if b != nil {
							bv = b[ch]
						}
						dw3x3Forward(s, &g, nil, dense[ch*plane:], wt[ch*9:], bv, wantD[ch*plane:], 1, 0, 0, clip, -0.5, 1.5)
					}
					gotD := randSlice(r, c.ch*plane)
					DepthwiseConv2DEx(ctx, g, 1, dense, wt, gotD, Epilogue{RowBias: b, Clip: clip, Min: -0.5, Max: 1.5})
					sameBits(t, fmt.Sprintf("%s bias=%v DepthwiseConv2DEx", name, b != nil), gotD, wantD)
				}
			}
		}
		ctx.Close()
	}
}

func sameBits(t *testing.T, name string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: value %d = %g, want %g", name, i, got[i], want[i])
		}
	}
}

// TestDepthwiseFlatS2Bits checks that the stride-2 flat kernel (planes
// split into even and odd rows and columns) gives the bits of the direct
// stride-2 kernels run channel by channel, on even and odd plane sizes,
// with bottom and right pads 1 and 0, several channels per call, and
// writes nothing past each plane; and that DepthwiseConv2DEx with one
// image (which uses it) does too.
func TestDepthwiseFlatS2Bits(t *testing.T) {
	if !cpu.avx512 {
		t.Skip("no AVX-512 on this CPU: the flat kernel is not used")
	}
	r := rand.New(rand.NewPCG(45, 46))
	ctx := NewContext(2)
	defer ctx.Close()
	s := &ctx.scratch[0]
	for _, c := range []struct {
		ch, h, w int
		pads     [4]int
	}{
		{3, 14, 14, [4]int{1, 1, 1, 1}}, {2, 7, 7, [4]int{1, 1, 1, 1}}, {5, 28, 28, [4]int{1, 1, 1, 1}},
		{2, 13, 9, [4]int{1, 1, 1, 1}}, {3, 2, 3, [4]int{1, 1, 1, 1}}, {2, 1, 1, [4]int{1, 1, 1, 1}},
		{2, 56, 56, [4]int{1, 1, 1, 1}}, {2, 5, 66, [4]int{1, 1, 1, 1}}, {4, 33, 5, [4]int{1, 1, 1, 1}},
		{3, 14, 14, [4]int{1, 1, 0, 0}}, {2, 9, 10, [4]int{1, 1, 0, 0}}, {2, 112, 112, [4]int{1, 1, 1, 1}},
	} {
		g, err := NewConvGeom(c.ch, c.h, c.w, 3, 3, [2]int{2, 2}, c.pads, [2]int{1, 1})
		if err != nil {
			t.Fatal(err)
		}
		flat := ctx.dwFlatMasks(&g)
		if flat == nil {
			t.Fatalf("%+v: no flat masks", c)
		}
		plane, oplane := c.h*c.w, g.OH*g.OW
		in := randSlice(r, c.ch*(plane+3))
		wt := randSlice(r, c.ch*9)
		bias := randSlice(r, c.ch)
		for _, clip := range []bool{false, true} {
			name := fmt.Sprintf("%+v clip=%v", c, clip)
			want := randSlice(r, c.ch*(oplane+2))
			got := append([]float32(nil), want...)
			for ch := 0; ch < c.ch; ch++ {
				if !dw3x3Forward(s, &g, nil, in[ch*(plane+3):], wt[ch*9:], bias[ch], want[ch*(oplane+2):], 1, 0, 0, clip, -0.5, 1.5) {
					t.Fatalf("%s: direct kernel not run", name)
				}
			}
			if !dw3x3FlatS2Chans(s, &g, flat, in, wt, bias, got, c.ch, plane+3, oplane+2, clip, -0.5, 1.5) {
				t.Fatalf("%s: flat kernel not run", name)
			}
			sameBits(t, name, got, want)
			dense := make([]float32, c.ch*plane)
			for ch := 0; ch < c.ch; ch++ {
				copy(dense[ch*plane:], in[ch*(plane+3):ch*(plane+3)+plane])
			}
			if oplane > 16 {
				gotD := randSlice(r, c.ch*oplane)
				DepthwiseConv2DEx(ctx, g, 1, dense, wt, gotD, Epilogue{RowBias: bias, Clip: clip, Min: -0.5, Max: 1.5})
				for ch := 0; ch < c.ch; ch++ {
					sameBits(t, name+" DepthwiseConv2DEx", gotD[ch*oplane:(ch+1)*oplane], want[ch*(oplane+2):ch*(oplane+2)+oplane])
				}
			}
		}
	}
}
