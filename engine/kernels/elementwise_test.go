package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

var vecLens = []int{0, 1, 7, 8, 15, 16, 17, 31, 33, 100, 1000, 4099}

func TestElementwise(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, n := range vecLens {
		x := randSlice(r, n)
		y := randSlice(r, n)

		dst := randSlice(r, n)
		Relu(dst, x)
		for i, v := range x {
			if want := float32(math.Max(float64(v), 0)); dst[i] != want {
				t.Fatalf("n=%d Relu[%d] = %g, want %g", n, i, dst[i], want)
			}
		}
		c := append([]float32(nil), x...)
		ClipInPlace(c, -0.3, 0.4)
		for i, v := range x {
			if want := min(max(v, -0.3), 0.4); c[i] != want {
				t.Fatalf("n=%d Clip[%d] = %g, want %g", n, i, c[i], want)
			}
		}
		g := randSlice(r, n)
		ReluBackward(g, y, x)
		for i, v := range x {
			want := y[i]
			if v <= 0 {
				want = 0
			}
			if g[i] != want {
				t.Fatalf("n=%d ReluBackward[%d] = %g, want %g", n, i, g[i], want)
			}
		}
		z := append([]float32(nil), y...)
		Axpy(-1.5, x, z)
		var dotWant, mag float64
		for i := range x {
			if want := y[i] + -1.5*x[i]; math.Abs(float64(z[i]-want)) > 1e-6*(1+math.Abs(float64(want))) {
				t.Fatalf("n=%d Axpy[%d] = %g, want %g", n, i, z[i], want)
			}
			dotWant += float64(x[i]) * float64(y[i])
			mag += math.Abs(float64(x[i]) * float64(y[i]))
		}
		if got := Dot(x, y); math.Abs(float64(got)-dotWant) > 1e-5*(1+mag) {
			t.Fatalf("n=%d Dot = %g, want %g", n, got, dotWant)
		}
		z = append(z[:0], y...)
		AddInPlace(z, x)
		for i := range x {
			if want := y[i] + x[i]; z[i] != want {
				t.Fatalf("n=%d AddInPlace[%d] = %g, want %g", n, i, z[i], want)
			}
		}
	}
}

func TestChannelOps(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 34))
	for _, s := range [][3]int{{1, 1, 1}, {2, 3, 17}, {3, 5, 49}, {2, 16, 196}} {
		n, c, hw := s[0], s[1], s[2]
		x := randSlice(r, n*c*hw)
		bias := randSlice(r, c)
		pix := randSlice(r, hw)
		got := append([]float32(nil), x...)
		AddChannelBias(got, n, c, hw, bias)
		ep := ReluEpilogue(bias, pix)
		got2 := append([]float32(nil), x...)
		ApplyEpilogue(got2, n, c, hw, ep)
		sums := make([]float32, c)
		SumChannels(sums, x, n, c, hw)
		for img := 0; img < n; img++ {
			for ch := 0; ch < c; ch++ {
				for p := 0; p < hw; p++ {
					i := (img*c+ch)*hw + p
					if want := x[i] + bias[ch]; got[i] != want {
						t.Fatalf("%v AddChannelBias[%d] = %g, want %g", s, i, got[i], want)
					}
					if want := max(x[i]+bias[ch]+pix[p], 0); math.Abs(float64(got2[i]-want)) > 1e-6 {
						t.Fatalf("%v ApplyEpilogue[%d] = %g, want %g", s, i, got2[i], want)
					}
				}
			}
		}
		for ch := 0; ch < c; ch++ {
			var want float64
			for img := 0; img < n; img++ {
				for p := 0; p < hw; p++ {
					want += float64(x[(img*c+ch)*hw+p])
				}
			}
			if math.Abs(float64(sums[ch])-want) > 1e-5*float64(n*hw) {
				t.Fatalf("%v SumChannels[%d] = %g, want %g", s, ch, sums[ch], want)
			}
		}
	}
}

func TestDepthwiseConv2DExRelu(t *testing.T) {
	r := rand.New(rand.NewPCG(35, 36))
	ctx := NewContext(2)
	defer ctx.Close()
	for _, cg := range convGeoms {
		g := cg.geom(t)
		in := randSlice(r, 2*cg.c*cg.h*cg.w)
		w := randSlice(r, cg.c*cg.kh*cg.kw)
		bias := randSlice(r, cg.c)
		out := randSlice(r, 2*cg.c*g.OH*g.OW)
		DepthwiseConv2DEx(ctx, g, 2, in, w, out, Epilogue{RowBias: bias, Clip: true, Min: 0, Max: 6})
		want := naiveConv(g, 2, cg.c, cg.c, in, w, bias)
		for i := range want {
			if !closeTo(out[i], math.Min(math.Max(want[i], 0), 6), float64(cg.kh*cg.kw)) {
				t.Fatalf("%+v: out[%d] = %g, want relu6(%g)", cg, i, out[i], want[i])
			}
		}
	}
}
