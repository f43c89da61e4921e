package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// refEpilogue applies ep to an m x n matrix c (row stride ldc) in place.
func refEpilogue(ep Epilogue, c []float32, m, n, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			v := c[i*ldc+j]
			if ep.RowBias != nil {
				v += ep.RowBias[i]
			}
			if ep.ColBias != nil {
				v += ep.ColBias[j]
			}
			if ep.Clip {
				v = min(max(v, ep.Min), ep.Max)
			}
			c[i*ldc+j] = v
		}
	}
}

// TestSgemmEpilogue checks SgemmEx and SgemmBatchedEx against Sgemm
// followed by a scalar epilogue, on every micro-kernel, for the GEMM, GEMV,
// k = 0, fused-batch and summed-batch paths, and that the kernels with the
// epilogue fused give the same bits as without.
func TestSgemmEpilogue(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	type tc struct {
		tA, tB      bool
		m, n, k     int
		count       int
		shareA, sum bool
		beta        float32
	}
	cases := []tc{
		{false, false, 33, 70, 20, 1, false, false, 0},
		{true, true, 16, 64, 300, 1, false, false, 1},
		{false, true, 1, 50, 40, 1, false, false, 0},
		{true, false, 45, 1, 40, 1, false, false, 0.5},
		{false, false, 9, 13, 0, 1, false, false, 2},
		{false, false, 40, 7, 24, 9, true, false, 0},
		{false, true, 24, 30, 7, 5, false, true, 0},
		{true, false, 17, 20, 9, 3, false, false, 1},
		{false, false, 30, 1, 20, 6, true, false, 0},
		{true, true, 30, 1, 20, 70, true, false, 1},
	}
	eps := func(m, n int) []Epilogue {
		rb, cb := randSlice(r, m), randSlice(r, n)
		return []Epilogue{
			ReluEpilogue(rb, nil),
			ReluEpilogue(nil, cb),
			{RowBias: rb, ColBias: cb},
			{ColBias: cb, Clip: true, Min: -0.5, Max: 0.75},
			{Clip: true, Min: 0, Max: 6},
		}
	}
	for _, kern := range kernelsAvailable() {
		ctx := NewContext(2)
		ctx.kern = kern
		for _, c := range cases {
			ar, ac := c.m, c.k
			if c.tA {
				ar, ac = c.k, c.m
			}
			br, bc := c.k, c.n
			if c.tB {
				br, bc = c.n, c.k
			}
			ac, bc = max(ac, 1), max(bc, 1)
			sa, sb, sc := ar*ac, br*bc, c.m*c.n
			if c.shareA {
				sa = 0
			}
			if c.sum {
				sc = 0
			}
			a := randSlice(r, sa*c.count+ar*ac)
			b := randSlice(r, sb*c.count+1)
			c0 := randSlice(r, sc*c.count+c.m*c.n)
			for _, ep := range eps(c.m, c.n) {
				want := append([]float32(nil), c0...)
				got := append([]float32(nil), c0...)
				ctx.SgemmBatched(c.tA, c.tB, c.m, c.n, c.k, 1.25, a, ac, sa, b, bc, sb, c.beta, want, c.n, sc, c.count)
				items := c.count
				if c.sum {
					items = 1
				}
				for i := 0; i < items; i++ {
					refEpilogue(ep, want[i*sc:], c.m, c.n, c.n)
				}
				if c.count == 1 {
					ctx.SgemmEx(c.tA, c.tB, c.m, c.n, c.k, 1.25, a, ac, b, bc, c.beta, got, c.n, ep)
				} else {
					ctx.SgemmBatchedEx(c.tA, c.tB, c.m, c.n, c.k, 1.25, a, ac, sa, b, bc, sb, c.beta, got, c.n, sc, c.count, ep)
				}
				for i := range got {
					if d := math.Abs(float64(got[i] - want[i])); !(d <= 1e-5*(1+math.Abs(float64(want[i])))) {
						t.Fatalf("%s %+v ep %+v: c[%d] = %g, want %g", kern.name, c, ep, i, got[i], want[i])
					}
				}
				if kern.ep == nil {
					continue
				}
				// the fused-epilogue kernels give the bits of the kernel
				// followed by the epilogue pass
				unfused := *kern
				unfused.ep = nil
				ctx.kern = &unfused
				sep := append([]float32(nil), c0...)
				if c.count == 1 {
					ctx.SgemmEx(c.tA, c.tB, c.m, c.n, c.k, 1.25, a, ac, b, bc, c.beta, sep, c.n, ep)
				} else {
					ctx.SgemmBatchedEx(c.tA, c.tB, c.m, c.n, c.k, 1.25, a, ac, sa, b, bc, sb, c.beta, sep, c.n, sc, c.count, ep)
				}
				ctx.kern = kern
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(sep[i]) {
						t.Fatalf("%s %+v ep %+v: fused c[%d] = %g, unfused %g", kern.name, c, ep, i, got[i], sep[i])
					}
				}
			}
		}
		ctx.Close()
	}
}

func TestBiasActTileNaN(t *testing.T) {
	c := []float32{float32(math.NaN()), -1, 2, float32(math.Inf(1))}
	biasActTile(c, 4, 1, 4, nil, nil, 0, 6)
	if !math.IsNaN(float64(c[0])) || c[1] != 0 || c[2] != 2 || c[3] != 6 {
		t.Fatalf("clamp [0,6] of {NaN,-1,2,+Inf} = %v", c)
	}
}
