package kernels

import (
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
			g, err := NewConvGeom(cg.c, cg.h, cg.w, cg.kh, cg.kw, cg.s, cg.p, cg.d)
			if err != nil {
				t.Fatal(err)
			}
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
			loss := func(in, w []float32) float64 {
				var s float64
				for i, v := range naiveConv(g, n, cout, 1, in, w, nil) {
					s += v * float64(dout[i])
				}
				return s
			}
			unit := make([]float32, len(w))
			for i := 0; i < len(w); i += 1 + len(w)/40 {
				unit[i] = 1
				if want := loss(in, unit); !closeTo(dw[i], want, float64(n*g.OH*g.OW)) {
					t.Fatalf("limit %d %+v: dweight[%d] = %g, want %g", limit, cg, i, dw[i], want)
				}
				unit[i] = 0
			}
			unitIn := make([]float32, len(in))
			for i := 0; i < len(in); i += 1 + len(in)/40 {
				unitIn[i] = 1
				if want := loss(unitIn, w); !closeTo(din[i], want, float64(cout*cg.kh*cg.kw)) {
					t.Fatalf("limit %d %+v: din[%d] = %g, want %g", limit, cg, i, din[i], want)
				}
				unitIn[i] = 0
			}
			for co := 0; co < cout; co++ {
				var want float64
				for img := 0; img < n; img++ {
					for _, v := range dout[(img*cout+co)*g.OH*g.OW : (img*cout+co+1)*g.OH*g.OW] {
						want += float64(v)
					}
				}
				if !closeTo(db[co], want, float64(n*g.OH*g.OW)) {
					t.Fatalf("limit %d %+v: dbias[%d] = %g, want %g", limit, cg, co, db[co], want)
				}
			}
		}
		ctx.Close()
	}
}
