package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// dwRef is a float64 reference depthwise convolution of n NCHW images
// (one output channel per group); it also returns per output the bound
// |bias| + sum |w*x| that scales the rounding tolerance.
func dwRef(g ConvGeom, n int, in, w, bias []float32) (ref, bound []float64) {
	oplane := g.OH * g.OW
	ref, bound = make([]float64, n*g.C*oplane), make([]float64, n*g.C*oplane)
	for p := 0; p < n*g.C; p++ {
		c := p % g.C
		for oy := 0; oy < g.OH; oy++ {
			for ox := 0; ox < g.OW; ox++ {
				var s, b float64
				if bias != nil {
					s, b = float64(bias[c]), math.Abs(float64(bias[c]))
				}
				for ky := 0; ky < g.KH; ky++ {
					iy := oy*g.Strides[0] - g.Pads[0] + ky*g.Dilations[0]
					for kx := 0; kx < g.KW; kx++ {
						ix := ox*g.Strides[1] - g.Pads[1] + kx*g.Dilations[1]
						if iy < 0 || iy >= g.H || ix < 0 || ix >= g.W {
							continue
						}
						v := float64(in[(p*g.H+iy)*g.W+ix]) * float64(w[(c*g.KH+ky)*g.KW+kx])
						s += v
						b += math.Abs(v)
					}
				}
				ref[p*oplane+oy*g.OW+ox], bound[p*oplane+oy*g.OW+ox] = s, b
			}
		}
	}
	return ref, bound
}

// checkDwRef fails the test when got (n NCHW images of g's outputs,
// clamped to [lo, hi] with clip) is not the reference within float32
// rounding.
func checkDwRef(t *testing.T, name string, g ConvGeom, n int, in, w, bias, got []float32, clip bool, lo, hi float32) {
	t.Helper()
	ref, bound := dwRef(g, n, in, w, bias)
	for i, r := range ref {
		if clip {
			r = min(max(r, float64(lo)), float64(hi))
		}
		if d := math.Abs(float64(got[i]) - r); !(d <= 1e-5*bound[i]+1e-30) {
			t.Fatalf("%s: out[%d] = %g, reference %g (bound %g)", name, i, got[i], r, bound[i])
		}
	}
}

// reviewGeoms returns 3x3 depthwise geometries of c channels for every
// plane of height and width 1..maxHW, strides 1 and 2 and pads 0, 1, 2
// (symmetric, and asymmetric ones), skipping those whose padded plane is
// smaller than the filter.
func reviewGeoms(t *testing.T, c, maxHW int) []ConvGeom {
	var gs []ConvGeom
	pads := [][4]int{{0, 0, 0, 0}, {1, 1, 1, 1}, {2, 2, 2, 2}, {1, 1, 0, 0}, {0, 0, 1, 1}, {1, 0, 2, 1}, {2, 1, 0, 2}, {1, 1, 2, 2}}
	for h := 1; h <= maxHW; h++ {
		for w := 1; w <= maxHW; w++ {
			for _, s := range []int{1, 2} {
				for _, p := range pads {
					if h+p[0]+p[2] < 3 || w+p[1]+p[3] < 3 {
						continue
					}
					g, err := NewConvGeom(c, h, w, 3, 3, [2]int{s, s}, p, [2]int{1, 1})
					if err != nil {
						t.Fatal(err)
					}
					gs = append(gs, g)
				}
			}
		}
	}
	return gs
}

// TestDepthwiseReviewOneImage checks the one-image depthwise kernels (flat
// stride 1 and stride 2 over all channels of an image) on every plane of
// 1..40 x 1..40 with pads 0, 1, 2 (also asymmetric), strides 1 and 2, and
// channel counts 1, 3 and 17, with and without bias and clamp: against a
// float64 reference, bit for bit against the same image convolved as the
// middle one of three (which runs the per-channel kernels), and that
// nothing past the output is written.
func TestDepthwiseReviewOneImage(t *testing.T) {
	r := rand.New(rand.NewPCG(51, 52))
	ctx := NewContext(1)
	defer ctx.Close()
	for _, c := range []int{1, 3, 17} {
		maxHW := 40
		if c == 17 {
			maxHW = 18
		}
		for _, g := range reviewGeoms(t, c, maxHW) {
			plane, oplane := g.H*g.W, g.OH*g.OW
			in := randSlice(r, 3*c*plane)
			w, bias := randSlice(r, c*9), randSlice(r, c)
			mid := in[c*plane : 2*c*plane]
			for _, ep := range []Epilogue{{RowBias: bias}, {Clip: true, Min: -0.25, Max: 0.5}} {
				name := fmt.Sprintf("C=%d %dx%d stride %d pads %v bias=%v clip=%v", c, g.H, g.W, g.Strides[0], g.Pads, ep.RowBias != nil, ep.Clip)
				got := randSlice(r, c*oplane+40)
				tail := append([]float32(nil), got[c*oplane:]...)
				DepthwiseConv2DEx(ctx, g, 1, mid, w, got[:c*oplane], ep)
				reviewSameBits(t, name+": values past the output", got[c*oplane:], tail)
				checkDwRef(t, name, g, 1, mid, w, ep.RowBias, got, ep.Clip, ep.Min, ep.Max)
				three := make([]float32, 3*c*oplane)
				DepthwiseConv2DEx(ctx, g, 3, in, w, three, ep)
				reviewSameBits(t, name+": against image 1 of 3", got[:c*oplane], three[c*oplane:2*c*oplane])
			}
		}
	}
}

// TestDepthwiseReviewThreads checks the one-image kernels and the
// channel-major tiny-plane kernel when the work is split over 1, 2 and 3
// threads (channel counts that split unevenly), bit for bit against one
// thread and against the float64 reference.
func TestDepthwiseReviewThreads(t *testing.T) {
	r := rand.New(rand.NewPCG(53, 54))
	type tc struct{ n, c, h, w, s, pad int }
	cases := []tc{{1, 67, 23, 23, 1, 1}, {1, 67, 40, 33, 2, 1}, {1, 61, 24, 24, 2, 1}, {1, 5, 160, 150, 1, 1}, {1, 7, 150, 161, 2, 1},
		{65, 67, 4, 4, 1, 1}, {65, 67, 2, 2, 1, 1}, {64, 131, 4, 4, 2, 1}, {65, 67, 3, 3, 1, 0}}
	ctxs := []*Context{NewContext(1), NewContext(2), NewContext(3)}
	for _, ctx := range ctxs {
		defer ctx.Close()
	}
	for _, cs := range cases {
		g, err := NewConvGeom(cs.c, cs.h, cs.w, 3, 3, [2]int{cs.s, cs.s}, [4]int{cs.pad, cs.pad, cs.pad, cs.pad}, [2]int{1, 1})
		if err != nil {
			t.Fatal(err)
		}
		plane, oplane := g.H*g.W, g.OH*g.OW
		in := randSlice(r, cs.n*cs.c*plane)
		w, bias := randSlice(r, cs.c*9), randSlice(r, cs.c)
		ep := Epilogue{RowBias: bias, Clip: true, Min: 0, Max: 6}
		want := make([]float32, cs.n*cs.c*oplane)
		DepthwiseConv2DEx(ctxs[0], g, cs.n, in, w, want, ep)
		checkDwRef(t, fmt.Sprintf("%+v", cs), g, cs.n, in, w, bias, want, true, 0, 6)
		for _, ctx := range ctxs[1:] {
			for _, cn := range []bool{false, true} {
				if cn && cs.n == 1 {
					continue
				}
				name := fmt.Sprintf("%+v threads %d CNHW %v", cs, ctx.threads, cn)
				x := in
				if cn {
					x = toCN(in, cs.n, cs.c, plane)
				}
				got := randSlice(r, len(want))
				DepthwiseConv2DLayout(ctx, g, cs.n, x, w, got, ep, cn, cn)
				exp := want
				if cn {
					exp = toCN(want, cs.n, cs.c, oplane)
				}
				reviewSameBits(t, name, got, exp)
			}
		}
	}
}

// TestDepthwiseReviewTinyCN checks the channel-major kernel for planes of
// at most 16 values on every tiny geometry (planes up to 4x4, strides 1
// and 2, pads 0 to 2, also asymmetric) with batches 1 to 40 (every
// remainder of the images packed per vector) and channel counts 1, 5 and
// 16: bit for bit against DepthwiseConv2DEx on NCHW data, for both layouts
// equal, and against the float64 reference (also the mixed layouts).
func TestDepthwiseReviewTinyCN(t *testing.T) {
	r := rand.New(rand.NewPCG(55, 56))
	ctx := NewContext(1)
	defer ctx.Close()
	for _, c := range []int{1, 5, 16} {
		for _, g := range reviewGeoms(t, c, 4) {
			if g.H*g.W > 16 {
				continue
			}
			plane, oplane := g.H*g.W, g.OH*g.OW
			w, bias := randSlice(r, c*9), randSlice(r, c)
			for n := 1; n <= 40; n++ {
				in := randSlice(r, n*c*plane)
				for _, ep := range []Epilogue{{RowBias: bias}, {Clip: true, Min: -0.25, Max: 0.5}} {
					name := fmt.Sprintf("n=%d C=%d %dx%d stride %d pads %v bias=%v clip=%v", n, c, g.H, g.W, g.Strides[0], g.Pads, ep.RowBias != nil, ep.Clip)
					want := make([]float32, n*c*oplane)
					DepthwiseConv2DEx(ctx, g, n, in, w, want, ep)
					if n == 1 || n == 40 {
						checkDwRef(t, name, g, n, in, w, ep.RowBias, want, ep.Clip, ep.Min, ep.Max)
					}
					got := randSlice(r, n*c*oplane+40)
					tail := append([]float32(nil), got[n*c*oplane:]...)
					DepthwiseConv2DLayout(ctx, g, n, toCN(in, n, c, plane), w, got[:n*c*oplane], ep, true, true)
					reviewSameBits(t, name+": CNHW", got[:n*c*oplane], toCN(want, n, c, oplane))
					reviewSameBits(t, name+": values past the output", got[n*c*oplane:], tail)
					if n%13 == 1 {
						// mixed layouts run other kernels (other bits): the reference
						mixed := make([]float32, n*c*oplane)
						DepthwiseConv2DLayout(ctx, g, n, toCN(in, n, c, plane), w, mixed, ep, true, false)
						checkDwRef(t, name+": CNHW to NCHW", g, n, in, w, ep.RowBias, mixed, ep.Clip, ep.Min, ep.Max)
						DepthwiseConv2DLayout(ctx, g, n, in, w, mixed, ep, false, true)
						checkDwRef(t, name+": NCHW to CNHW", g, n, in, w, ep.RowBias, fromCN(mixed, n, c, oplane), ep.Clip, ep.Min, ep.Max)
					}
				}
			}
		}
	}
}

// TestDepthwiseReviewGeneral checks the layouts on the geometries the 3x3
// kernels do not take (5x5, dilation 2, stride (1, 2), pads 3) against the
// float64 reference and NCHW bit for bit, for every layout pair.
func TestDepthwiseReviewGeneral(t *testing.T) {
	r := rand.New(rand.NewPCG(57, 58))
	ctx := NewContext(2)
	defer ctx.Close()
	type tc struct {
		c, h, w, k int
		s, d       [2]int
		p          [4]int
	}
	for _, cs := range []tc{{5, 4, 3, 5, [2]int{1, 1}, [2]int{1, 1}, [4]int{2, 1, 2, 3}}, {3, 7, 9, 3, [2]int{1, 1}, [2]int{2, 2}, [4]int{2, 2, 1, 2}},
		{4, 6, 7, 3, [2]int{1, 2}, [2]int{1, 1}, [4]int{1, 1, 1, 1}}, {2, 5, 5, 3, [2]int{3, 3}, [2]int{1, 1}, [4]int{3, 3, 3, 3}}, {3, 1, 1, 3, [2]int{1, 1}, [2]int{1, 1}, [4]int{3, 3, 3, 3}}} {
		g, err := NewConvGeom(cs.c, cs.h, cs.w, cs.k, cs.k, cs.s, cs.p, cs.d)
		if err != nil {
			t.Fatal(err)
		}
		plane, oplane := g.H*g.W, g.OH*g.OW
		for _, n := range []int{1, 2, 5, 17} {
			in := randSlice(r, n*cs.c*plane)
			w, bias := randSlice(r, cs.c*cs.k*cs.k), randSlice(r, cs.c)
			ep := Epilogue{RowBias: bias}
			want := make([]float32, n*cs.c*oplane)
			DepthwiseConv2DEx(ctx, g, n, in, w, want, ep)
			checkDwRef(t, fmt.Sprintf("%+v n=%d", cs, n), g, n, in, w, bias, want, false, 0, 0)
			for _, lay := range [][2]bool{{true, true}, {false, true}, {true, false}} {
				x := in
				if lay[0] {
					x = toCN(in, n, cs.c, plane)
				}
				got := randSlice(r, len(want))
				DepthwiseConv2DLayout(ctx, g, n, x, w, got, ep, lay[0], lay[1])
				exp := want
				if lay[1] {
					exp = toCN(want, n, cs.c, oplane)
				}
				reviewSameBits(t, fmt.Sprintf("%+v n=%d layouts %v", cs, n, lay), got, exp)
			}
		}
	}
}

// reviewSameBits fails the test when got and want differ in any bit.
func reviewSameBits(t *testing.T, name string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: value %d = %g, want %g", name, i, got[i], want[i])
		}
	}
}

// TestNewConvGeomWindowTooLarge checks NewConvGeom's output size against
// ONNX's floor((in + pads - dilation*(k-1) - 1)/stride) + 1 on every small
// geometry, and that it refuses a window larger than the padded input at
// every stride (truncating division once made a 3-tap window over 2
// values at stride 2 a 1-value output).
func TestNewConvGeomWindowTooLarge(t *testing.T) {
	floorDiv := func(a, b int) int { return int(math.Floor(float64(a) / float64(b))) }
	for h := 1; h <= 6; h++ {
		for k := 1; k <= 5; k++ {
			for s := 1; s <= 3; s++ {
				for d := 1; d <= 2; d++ {
					for p := 0; p <= 2; p++ {
						pads := [4]int{p, 0, 0, p}
						g, err := NewConvGeom(1, h, h, k, k, [2]int{s, s}, pads, [2]int{d, d})
						oh := floorDiv(h+p-d*(k-1)-1, s) + 1
						name := fmt.Sprintf("h=%d k=%d stride %d dilation %d pad %d", h, k, s, d, p)
						if oh < 1 {
							if err == nil {
								t.Fatalf("%s: no error for a window larger than the padded input (output %dx%d)", name, g.OH, g.OW)
							}
							continue
						}
						if err != nil {
							t.Fatalf("%s: %v", name, err)
						}
						if g.OH != oh || g.OW != oh {
							t.Fatalf("%s: output %dx%d, want %dx%d", name, g.OH, g.OW, oh, oh)
						}
					}
				}
			}
		}
	}
}

// fromCN returns the CNHW activation x (n images, c channels of plane
// values) stored NCHW.
func fromCN(x []float32, n, c, plane int) []float32 {
	y := make([]float32, len(x))
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			copy(y[(i*c+ch)*plane:(i*c+ch+1)*plane], x[(ch*n+i)*plane:(ch*n+i+1)*plane])
		}
	}
	return y
}
