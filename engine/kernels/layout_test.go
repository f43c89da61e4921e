package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// toCN returns the NCHW activation x (n images, c channels of plane
// values) stored channel-major across the batch (CNHW).
func toCN(x []float32, n, c, plane int) []float32 {
	y := make([]float32, len(x))
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			copy(y[(ch*n+i)*plane:(ch*n+i+1)*plane], x[(i*c+ch)*plane:(i*c+ch+1)*plane])
		}
	}
	return y
}

// TestDepthwiseLayoutBits checks that DepthwiseConv2DLayout gives the bits
// of DepthwiseConv2DEx in every layout pair (same layouts on tiny planes,
// where the mixed ones run another kernel), with and without bias and
// clamp, at 1 and 2 threads, on the plane sizes of the 32x32 fixtures
// (tiny 4x4, 2x2 and 1x1 outputs; 8x8 and 16x16 planes on the general
// kernels; a 5x5 filter on the per-plane fallback), and with batches that
// do not fill the last vector of the tiny kernel.
func TestDepthwiseLayoutBits(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	type tc struct{ c, hw, k, stride, pad int }
	cases := []tc{{32, 2, 3, 1, 1}, {24, 4, 3, 1, 1}, {16, 4, 3, 2, 1}, {40, 2, 3, 2, 1}, {8, 8, 3, 2, 1},
		{8, 8, 3, 1, 1}, {6, 16, 3, 1, 1}, {6, 16, 3, 2, 1}, {5, 6, 5, 1, 2}, {12, 3, 3, 1, 1}}
	ctxs := []*Context{NewContext(1), NewContext(2)}
	defer ctxs[0].Close()
	defer ctxs[1].Close()
	for _, cs := range cases {
		g, err := NewConvGeom(cs.c, cs.hw, cs.hw, cs.k, cs.k, [2]int{cs.stride, cs.stride}, [4]int{cs.pad, cs.pad, cs.pad, cs.pad}, [2]int{1, 1})
		if err != nil {
			t.Fatal(err)
		}
		plane, oplane := g.H*g.W, g.OH*g.OW
		for _, n := range []int{1, 3, 5, 16, 64} {
			in := randSlice(r, n*cs.c*plane)
			w, bias := randSlice(r, cs.c*cs.k*cs.k), randSlice(r, cs.c)
			for _, ep := range []Epilogue{{}, {RowBias: bias}, {RowBias: bias, Clip: true, Min: 0, Max: float32(math.Inf(1))}, {Clip: true, Min: -0.5, Max: 0.5}} {
				want := make([]float32, n*cs.c*oplane)
				DepthwiseConv2DEx(ctxs[0], g, n, in, w, want, ep)
				for _, ctx := range ctxs {
					for _, lay := range [][2]bool{{false, false}, {true, true}, {false, true}, {true, false}} {
						if DepthwiseTinyPlanes(g) && lay[0] != lay[1] {
							continue
						}
						name := fmt.Sprintf("%+v n=%d threads=%d bias=%v clip=%v in/out CN=%v", cs, n, ctx.threads, ep.RowBias != nil, ep.Clip, lay)
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
						for i := range exp {
							if math.Float32bits(got[i]) != math.Float32bits(exp[i]) {
								t.Fatalf("%s: out[%d] = %g, want %g (bits)", name, i, got[i], exp[i])
							}
						}
					}
				}
			}
		}
	}
}

// TestScaleRows checks ScaleRows against the scalar expression v*d + b,
// bit for bit, on row lengths around the vector width, with and without
// the shift, and that it leaves the values between rows alone.
func TestScaleRows(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	for _, cols := range []int{1, 4, 15, 16, 17, 64, 100} {
		for _, rows := range []int{1, 3, 70} {
			for _, withB := range []bool{false, true} {
				lds, ldd := cols+3, cols+5
				src := randSlice(r, (rows-1)*lds+cols)
				d, b := randSlice(r, rows), randSlice(r, rows)
				if !withB {
					b = nil
				}
				dst := randSlice(r, (rows-1)*ldd+cols)
				orig := append([]float32(nil), dst...)
				ScaleRows(dst, ldd, src, lds, rows, cols, d, b)
				for i := 0; i < rows; i++ {
					var b0 float32
					if b != nil {
						b0 = b[i]
					}
					for j := 0; j < ldd && i*ldd+j < len(dst); j++ {
						want := orig[i*ldd+j]
						if j < cols {
							want = src[i*lds+j]*d[i] + b0
						}
						if math.Float32bits(dst[i*ldd+j]) != math.Float32bits(want) {
							t.Fatalf("cols %d rows %d b %v: dst[%d][%d] = %g, want %g", cols, rows, withB, i, j, dst[i*ldd+j], want)
						}
					}
				}
			}
		}
	}
}
