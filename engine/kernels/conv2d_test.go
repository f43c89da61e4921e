package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestConv2D compares Conv2D (with a ReLU epilogue and bias) and
// Conv2DBackward with the float64 naive convolution and its exact
// derivatives, with whole-batch and one-image column chunks.
func TestConv2D(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	for _, limit := range []int{0, 1} {
		ctx := NewContext(2)
		ctx.colLimit = limit
		for _, cg := range convGeoms {
			g := cg.geom(t)
			const n, cout = 3, 5
			kdim := cg.c * cg.kh * cg.kw
			in := randSlice(r, n*cg.c*cg.h*cg.w)
			w := randSlice(r, cout*kdim)
			bias := randSlice(r, cout)
			out := randSlice(r, n*cout*g.OH*g.OW)
			ctx.Conv2D(g, n, cout, in, w, out, ReluEpilogue(bias, nil))
			want := naiveConv(g, n, cout, 1, in, w, bias)
			for i := range want {
				if !closeTo(out[i], math.Max(want[i], 0), float64(kdim)) {
					t.Fatalf("limit %d %+v: out[%d] = %g, want relu(%g)", limit, cg, i, out[i], want[i])
				}
			}

			dout := randSlice(r, len(out))
			din, dw, db := randSlice(r, len(in)), randSlice(r, len(w)), randSlice(r, cout)
			ctx.Conv2DBackward(g, n, cout, in, w, dout, din, dw, db)
			prefix := fmt.Sprintf("limit %d %+v", limit, cg)
			checkUnitGrad(t, prefix, "dweight", dw, 1+len(w)/40, float64(n*g.OH*g.OW), func(unit []float32) float64 {
				return dotLoss(naiveConv(g, n, cout, 1, in, unit, nil), dout)
			})
			checkUnitGrad(t, prefix, "din", din, 1+len(in)/40, float64(cout*cg.kh*cg.kw), func(unit []float32) float64 {
				return dotLoss(naiveConv(g, n, cout, 1, unit, w, nil), dout)
			})
			checkBiasGrad(t, prefix, db, dout, n, cout, g.OH*g.OW)
		}
		ctx.Close()
	}
}
