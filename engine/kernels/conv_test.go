package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// naiveConv is a float64 reference grouped convolution of n NCHW images
// (groups = 1 or C); weight is [cout, C/groups, KH, KW].
func naiveConv(g ConvGeom, n, cout, groups int, in, weight, bias []float32) []float64 {
	cpg := g.C / groups
	opg := cout / groups
	out := make([]float64, n*cout*g.OH*g.OW)
	for img := 0; img < n; img++ {
		for co := 0; co < cout; co++ {
			grp := co / opg
			for oy := 0; oy < g.OH; oy++ {
				for ox := 0; ox < g.OW; ox++ {
					var s float64
					if bias != nil {
						s = float64(bias[co])
					}
					for ci := 0; ci < cpg; ci++ {
						c := grp*cpg + ci
						for ky := 0; ky < g.KH; ky++ {
							iy := oy*g.Strides[0] - g.Pads[0] + ky*g.Dilations[0]
							if iy < 0 || iy >= g.H {
								continue
							}
							for kx := 0; kx < g.KW; kx++ {
								ix := ox*g.Strides[1] - g.Pads[1] + kx*g.Dilations[1]
								if ix < 0 || ix >= g.W {
									continue
								}
								s += float64(in[((img*g.C+c)*g.H+iy)*g.W+ix]) * float64(weight[((co*cpg+ci)*g.KH+ky)*g.KW+kx])
							}
						}
					}
					out[((img*cout+co)*g.OH+oy)*g.OW+ox] = s
				}
			}
		}
	}
	return out
}

// convCase is a convolution geometry under test: channels, input size,
// kernel size, strides, pads and dilations.
type convCase struct {
	c, h, w, kh, kw int
	s               [2]int
	p               [4]int
	d               [2]int
}

// geom returns the ConvGeom of cg, failing the test when it is invalid.
func (cg convCase) geom(t testing.TB) ConvGeom {
	t.Helper()
	g, err := NewConvGeom(cg.c, cg.h, cg.w, cg.kh, cg.kw, cg.s, cg.p, cg.d)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// checkUnitGrad checks grad[i] for i = 0, step, 2*step, ... against
// loss(e_i), the exact derivative of a loss linear in the argument whose
// gradient grad is (e_i: the unit basis vector), within closeTo(scale).
// prefix and name start the failure message.
func checkUnitGrad(t *testing.T, prefix, name string, grad []float32, step int, scale float64, loss func(unit []float32) float64) {
	t.Helper()
	unit := make([]float32, len(grad))
	for i := 0; i < len(grad); i += step {
		unit[i] = 1
		want := loss(unit)
		unit[i] = 0
		if !closeTo(grad[i], want, scale) {
			t.Fatalf("%s: %s[%d] = %g, want %g", prefix, name, i, grad[i], want)
		}
	}
}

// checkBiasGrad checks db[c], the bias gradient of channel c, against the
// sum of dout over the n images' planes of that channel (channels planes
// of size plane per image).
func checkBiasGrad(t *testing.T, prefix string, db, dout []float32, n, channels, plane int) {
	t.Helper()
	for c := 0; c < channels; c++ {
		var want float64
		for img := 0; img < n; img++ {
			for _, v := range dout[(img*channels+c)*plane : (img*channels+c+1)*plane] {
				want += float64(v)
			}
		}
		if !closeTo(db[c], want, float64(n*plane)) {
			t.Fatalf("%s: dbias[%d] = %g, want %g", prefix, c, db[c], want)
		}
	}
}

// dotLoss returns sum(dout * y) for the float64 output y of a convolution.
func dotLoss(y []float64, dout []float32) float64 {
	var s float64
	for i, v := range y {
		s += v * float64(dout[i])
	}
	return s
}

var convGeoms = []convCase{
	{3, 8, 8, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{4, 7, 9, 3, 3, [2]int{2, 2}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{2, 10, 6, 3, 2, [2]int{1, 2}, [4]int{0, 1, 2, 0}, [2]int{2, 1}},
	{5, 5, 5, 5, 5, [2]int{1, 1}, [4]int{2, 2, 2, 2}, [2]int{1, 1}},
	{3, 9, 11, 3, 3, [2]int{3, 2}, [4]int{0, 0, 0, 0}, [2]int{2, 2}},
	{16, 14, 14, 3, 3, [2]int{2, 2}, [4]int{0, 0, 1, 1}, [2]int{1, 1}},
	{8, 33, 40, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{6, 1, 1, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{2, 4, 4, 1, 1, [2]int{1, 1}, [4]int{0, 0, 0, 0}, [2]int{1, 1}},
	{4, 12, 13, 7, 3, [2]int{2, 1}, [4]int{3, 1, 3, 1}, [2]int{1, 3}},
	{4, 37, 45, 3, 3, [2]int{2, 2}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{3, 20, 35, 3, 3, [2]int{2, 2}, [4]int{0, 0, 1, 1}, [2]int{1, 1}},
	{2, 5, 70, 3, 3, [2]int{1, 1}, [4]int{2, 2, 0, 0}, [2]int{1, 1}},
	{2, 16, 16, 3, 3, [2]int{1, 1}, [4]int{0, 0, 0, 0}, [2]int{1, 1}},
	{2, 32, 33, 3, 3, [2]int{2, 2}, [4]int{2, 1, 0, 2}, [2]int{1, 1}},
	{20, 6, 5, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{33, 4, 4, 3, 3, [2]int{2, 2}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{17, 2, 2, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{5, 3, 3, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{7, 2, 3, 3, 3, [2]int{2, 2}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{40, 8, 8, 3, 3, [2]int{2, 2}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{18, 4, 3, 3, 3, [2]int{1, 1}, [4]int{2, 2, 2, 2}, [2]int{1, 1}},
	{3, 9, 10, 3, 3, [2]int{1, 1}, [4]int{2, 2, 2, 2}, [2]int{2, 2}},
	{2, 11, 40, 3, 3, [2]int{2, 2}, [4]int{1, 0, 1, 0}, [2]int{1, 2}},
	{2, 6, 37, 5, 1, [2]int{2, 2}, [4]int{2, 0, 2, 0}, [2]int{1, 1}},
	{3, 1, 5, 1, 1, [2]int{1, 1}, [4]int{0, 2, 0, 2}, [2]int{1, 1}},
	{4, 1, 1, 1, 5, [2]int{1, 1}, [4]int{0, 2, 0, 2}, [2]int{1, 1}}, // kernel taps entirely in the padding
	// planes of the flat 3x3 kernel (stride 1, pads 1; rows run on across
	// vector lanes, a masked last vector when the plane is not a multiple
	// of 16)
	{4, 7, 7, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{3, 14, 14, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{2, 5, 13, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{2, 17, 19, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{2, 1, 21, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{3, 23, 1, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{2, 1, 1, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	// widths dividing 16 (16/W rows a vector)
	{5, 4, 8, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{3, 8, 4, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{2, 32, 8, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{3, 12, 4, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{2, 8, 2, 3, 3, [2]int{1, 1}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	// stride 2 with output rows of at most 8 values (two rows per vector)
	{3, 16, 16, 3, 3, [2]int{2, 2}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
	{2, 15, 13, 3, 3, [2]int{2, 2}, [4]int{2, 2, 2, 2}, [2]int{1, 1}},
	{3, 9, 5, 3, 3, [2]int{2, 2}, [4]int{0, 2, 1, 0}, [2]int{1, 1}},
	{2, 6, 17, 3, 3, [2]int{2, 2}, [4]int{0, 0, 0, 0}, [2]int{1, 1}},
	{2, 14, 14, 3, 3, [2]int{2, 2}, [4]int{1, 1, 1, 1}, [2]int{1, 1}},
}

func closeTo(got float32, want, scale float64) bool {
	return math.Abs(float64(got)-want) <= 1e-5*(scale+math.Abs(want))
}

// TestIm2colRows checks that every band of output rows unfolds to the
// matching columns of the whole image's Im2col, with the gaps of ld left
// alone.
func TestIm2colRows(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	for _, cg := range convGeoms {
		g := cg.geom(t)
		in := randSlice(r, cg.c*cg.h*cg.w)
		kdim, hw := cg.c*cg.kh*cg.kw, g.OH*g.OW
		col := make([]float32, kdim*hw)
		Im2col(g, in, col)
		for band := 1; band <= g.OH; band++ {
			for oy0 := 0; oy0 < g.OH; oy0 += band {
				oy1 := min(g.OH, oy0+band)
				n := (oy1 - oy0) * g.OW
				ld := n + 2
				got := randSlice(r, (kdim-1)*ld+n+2)
				gaps := append([]float32(nil), got...)
				Im2colRows(g, in, got, ld, oy0, oy1)
				for row := 0; row < kdim; row++ {
					for j := 0; j < ld; j++ {
						v := got[row*ld+j]
						if j < n && v != col[row*hw+oy0*g.OW+j] {
							t.Fatalf("%+v rows [%d, %d): [%d,%d] = %g, Im2col gives %g", cg, oy0, oy1, row, j, v, col[row*hw+oy0*g.OW+j])
						}
						if j >= n && v != gaps[row*ld+j] {
							t.Fatalf("%+v rows [%d, %d): wrote the gap at [%d,%d]", cg, oy0, oy1, row, j)
						}
					}
				}
			}
		}
	}
}

func TestIm2colConv(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, cg := range convGeoms {
		g := cg.geom(t)
		const cout = 5
		in := randSlice(r, cg.c*cg.h*cg.w)
		w := randSlice(r, cout*cg.c*cg.kh*cg.kw)
		kdim, hw := cg.c*cg.kh*cg.kw, g.OH*g.OW
		col := randSlice(r, kdim*hw) // garbage must be overwritten
		Im2col(g, in, col)
		// Im2colLD writes the same rows ld apart and leaves the gaps alone.
		ld := hw + 3
		wide := randSlice(r, (kdim-1)*ld+hw)
		gaps := append([]float32(nil), wide...)
		Im2colLD(g, in, wide, ld)
		for row := 0; row < kdim; row++ {
			for j := 0; j < ld && row*ld+j < len(wide); j++ {
				got := wide[row*ld+j]
				if j < hw && got != col[row*hw+j] {
					t.Fatalf("%+v: Im2colLD[%d,%d] = %g, Im2col gives %g", cg, row, j, got, col[row*hw+j])
				}
				if j >= hw && got != gaps[row*ld+j] {
					t.Fatalf("%+v: Im2colLD wrote the gap at [%d,%d]", cg, row, j)
				}
			}
		}
		out := make([]float32, cout*hw)
		Sgemm(false, false, cout, hw, kdim, 1, w, kdim, col, hw, 0, out, hw)
		want := naiveConv(g, 1, cout, 1, in, w, nil)
		for i := range want {
			if !closeTo(out[i], want[i], float64(kdim)) {
				t.Fatalf("%+v: out[%d] = %g, want %g", cg, i, out[i], want[i])
			}
		}
	}
}

// TestCol2imAdjoint checks <Col2im(y), x> == <y, Im2col(x)> for random x, y.
func TestCol2imAdjoint(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, cg := range convGeoms {
		g := cg.geom(t)
		x := randSlice(r, cg.c*cg.h*cg.w)
		y := randSlice(r, cg.c*cg.kh*cg.kw*g.OH*g.OW)
		col := make([]float32, len(y))
		Im2col(g, x, col)
		im := randSlice(r, len(x)) // garbage must be overwritten
		Col2im(g, y, im)
		var lhs, rhs, mag float64
		for i := range x {
			lhs += float64(im[i]) * float64(x[i])
			mag += math.Abs(float64(im[i]) * float64(x[i]))
		}
		for i := range y {
			rhs += float64(y[i]) * float64(col[i])
		}
		if math.Abs(lhs-rhs) > 1e-5*mag {
			t.Fatalf("%+v: <col2im(y),x> = %g, <y,im2col(x)> = %g", cg, lhs, rhs)
		}
	}
}

func TestDepthwiseConv2D(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, threads := range []int{1, 2} {
		ctx := NewContext(threads)
		for _, cg := range convGeoms {
			g := cg.geom(t)
			const n = 3
			in := randSlice(r, n*cg.c*cg.h*cg.w)
			w := randSlice(r, cg.c*cg.kh*cg.kw)
			bias := randSlice(r, cg.c)
			for _, b := range [][]float32{nil, bias} {
				out := randSlice(r, n*cg.c*g.OH*g.OW)
				DepthwiseConv2D(ctx, g, n, in, w, b, out)
				want := naiveConv(g, n, cg.c, cg.c, in, w, b)
				for i := range want {
					if !closeTo(out[i], want[i], float64(cg.kh*cg.kw)) {
						t.Fatalf("%+v bias=%v: out[%d] = %g, want %g", cg, b != nil, i, out[i], want[i])
					}
				}
			}
		}
		ctx.Close()
	}
}

// TestDepthwiseConv2DBackward compares the gradients with the float64
// derivatives of L = sum(dout * conv(in, w) + bias), built from the naive
// convolution: dL/dw[c,k] = conv with a unit weight, dL/din = adjoint.
func TestDepthwiseConv2DBackward(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	ctx := NewContext(2)
	defer ctx.Close()
	for _, cg := range convGeoms {
		g := cg.geom(t)
		const n = 2
		ksz := cg.kh * cg.kw
		in := randSlice(r, n*cg.c*cg.h*cg.w)
		w := randSlice(r, cg.c*ksz)
		dout := randSlice(r, n*cg.c*g.OH*g.OW)
		din := randSlice(r, len(in))
		dw := randSlice(r, len(w))
		db := randSlice(r, cg.c)
		DepthwiseConv2DBackward(ctx, g, n, in, w, dout, din, dw, db)
		// The convolution is linear in w and in in: the gradient entry for a
		// unit basis vector e is sum(dout * conv(e)).
		prefix := fmt.Sprintf("%+v", cg)
		checkUnitGrad(t, prefix, "dweight", dw, 1, float64(n*g.OH*g.OW), func(unit []float32) float64 {
			return dotLoss(naiveConv(g, n, cg.c, cg.c, in, unit, nil), dout)
		})
		checkUnitGrad(t, prefix, "din", din, 1+len(in)/97, float64(ksz), func(unit []float32) float64 {
			return dotLoss(naiveConv(g, n, cg.c, cg.c, unit, w, nil), dout)
		})
		checkBiasGrad(t, prefix, db, dout, n, cg.c, g.OH*g.OW)
	}
}

func TestNewConvGeomErrors(t *testing.T) {
	for _, tc := range []struct {
		s [2]int
		p [4]int
		d [2]int
		k int
	}{
		{[2]int{0, 1}, [4]int{}, [2]int{1, 1}, 3},
		{[2]int{1, 1}, [4]int{-1, 0, 0, 0}, [2]int{1, 1}, 3},
		{[2]int{1, 1}, [4]int{}, [2]int{1, 0}, 3},
		{[2]int{1, 1}, [4]int{}, [2]int{1, 1}, 9},
	} {
		if _, err := NewConvGeom(2, 5, 5, tc.k, tc.k, tc.s, tc.p, tc.d); err == nil {
			t.Errorf("NewConvGeom(%+v) gave no error", tc)
		}
	}
}

// TestDepthwiseThreads checks that 2 threads give the same results as 1
// on problems large enough to be split (tiny, narrow and wide planes).
func TestDepthwiseThreads(t *testing.T) {
	r := rand.New(rand.NewPCG(51, 52))
	c1, c2 := NewContext(1), NewContext(2)
	defer c1.Close()
	defer c2.Close()
	for _, s := range [][4]int{{64, 2, 1, 200}, {48, 4, 2, 100}, {16, 8, 1, 64}, {8, 40, 2, 8}} {
		c, hw, st, n := s[0], s[1], s[2], s[3]
		g, err := NewConvGeom(c, hw, hw, 3, 3, [2]int{st, st}, [4]int{1, 1, 1, 1}, [2]int{1, 1})
		if err != nil {
			t.Fatal(err)
		}
		in, w, b := randSlice(r, n*c*hw*hw), randSlice(r, c*9), randSlice(r, c)
		dout := randSlice(r, n*c*g.OH*g.OW)
		o1, o2 := make([]float32, len(dout)), make([]float32, len(dout))
		DepthwiseConv2D(c1, g, n, in, w, b, o1)
		DepthwiseConv2D(c2, g, n, in, w, b, o2)
		want := naiveConv(g, n, c, c, in, w, b)
		for i := range o1 {
			if o1[i] != o2[i] || !closeTo(o1[i], want[i], 9) {
				t.Fatalf("%v: out[%d] = %g (1 thread) / %g (2 threads), want %g", s, i, o1[i], o2[i], want[i])
			}
		}
		di1, di2 := make([]float32, len(in)), make([]float32, len(in))
		dw1, dw2 := make([]float32, len(w)), make([]float32, len(w))
		DepthwiseConv2DBackward(c1, g, n, in, w, dout, di1, dw1, nil)
		DepthwiseConv2DBackward(c2, g, n, in, w, dout, di2, dw2, nil)
		for i := range di1 {
			if di1[i] != di2[i] {
				t.Fatalf("%v: din[%d] = %g (1 thread) / %g (2 threads)", s, i, di1[i], di2[i])
			}
		}
		for i := range dw1 {
			if math.Abs(float64(dw1[i]-dw2[i])) > 1e-4*(1+math.Abs(float64(dw1[i]))) {
				t.Fatalf("%v: dweight[%d] = %g (1 thread) / %g (2 threads)", s, i, dw1[i], dw2[i])
			}
		}
	}
}
