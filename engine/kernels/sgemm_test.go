package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func randSlice(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// refGemm is a float64 reference for C = alpha*op(A)*op(B) + beta*C. It also
// returns, per element, the bound sum |alpha*a*b| + |beta*c| used to scale
// the tolerance.
func refGemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) (want, mag []float64) {
	want = make([]float64, m*n)
	mag = make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, sm float64
			for p := 0; p < k; p++ {
				var av, bv float64
				if tA {
					av = float64(a[p*lda+i])
				} else {
					av = float64(a[i*lda+p])
				}
				if tB {
					bv = float64(b[j*ldb+p])
				} else {
					bv = float64(b[p*ldb+j])
				}
				s += av * bv
				sm += math.Abs(av * bv)
			}
			v := float64(alpha) * s
			mv := math.Abs(float64(alpha)) * sm
			if beta != 0 {
				v += float64(beta) * float64(c[i*ldc+j])
				mv += math.Abs(float64(beta) * float64(c[i*ldc+j]))
			}
			want[i*n+j] = v
			mag[i*n+j] = mv
		}
	}
	return want, mag
}

type gemmCase struct {
	tA, tB      bool
	m, n, k     int
	pad         int // extra leading-dimension padding
	alpha, beta float32
}

func gemmCases() []gemmCase {
	var cs []gemmCase
	sizes := [][3]int{
		{1, 1, 1}, {1, 17, 3}, {3, 1, 17}, {17, 3, 1}, {3, 3, 3}, {17, 17, 17},
		{64, 64, 64}, {129, 17, 64}, {13, 129, 65}, {1, 1000, 3}, {1000, 1, 17},
		{64, 49, 129}, {31, 33, 300}, {129, 129, 129}, {200, 70, 600}, {40, 1000, 40},
	}
	ab := [][2]float32{{1, 0}, {1, 1}, {-0.5, 2}, {2.5, -1}}
	i := 0
	for _, s := range sizes {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				x := ab[i%len(ab)]
				cs = append(cs, gemmCase{tA, tB, s[0], s[1], s[2], i % 3 * 2, x[0], x[1]})
				i++
			}
		}
	}
	cs = append(cs, gemmCase{false, false, 300, 600, 1000, 0, 1, 0}, gemmCase{true, false, 256, 1100, 300, 5, 1, 1})
	return cs
}

// gemmFunc is the signature shared by Sgemm and Context.Sgemm.
type gemmFunc func(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// runGemmCase builds random operands for gc, runs every f on them and
// compares C with the float64 reference, computed once.
func runGemmCase(t *testing.T, gc gemmCase, names []string, fs []gemmFunc) {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(gc.m*1000003+gc.n*1009+gc.k), 7))
	ar, ac := gc.m, gc.k
	if gc.tA {
		ar, ac = gc.k, gc.m
	}
	br, bc := gc.k, gc.n
	if gc.tB {
		br, bc = gc.n, gc.k
	}
	lda, ldb, ldc := ac+gc.pad, bc+gc.pad+1, gc.n+gc.pad
	a := randSlice(r, ar*lda)
	b := randSlice(r, br*ldb)
	c0 := randSlice(r, gc.m*ldc)
	if gc.beta == 0 {
		for i := range c0 {
			c0[i] = float32(math.NaN())
		}
	}
	want, mag := refGemm(gc.tA, gc.tB, gc.m, gc.n, gc.k, gc.alpha, a, lda, b, ldb, gc.beta, c0, ldc)
	c := make([]float32, len(c0))
	for fi, f := range fs {
		copy(c, c0)
		f(gc.tA, gc.tB, gc.m, gc.n, gc.k, gc.alpha, a, lda, b, ldb, gc.beta, c, ldc)
		for i := 0; i < gc.m; i++ {
			for j := 0; j < ldc; j++ {
				got := c[i*ldc+j]
				if j >= gc.n {
					if math.Float32bits(got) != math.Float32bits(c0[i*ldc+j]) {
						t.Fatalf("%s %+v: C[%d,%d] outside the matrix changed", names[fi], gc, i, j)
					}
					continue
				}
				w := want[i*gc.n+j]
				tol := 1e-5*mag[i*gc.n+j]*math.Sqrt(float64(gc.k)+1) + 1e-30
				if d := math.Abs(float64(got) - w); !(d <= tol) {
					t.Fatalf("%s %+v: C[%d,%d] = %g, want %g (tol %g)", names[fi], gc, i, j, got, w, tol)
				}
			}
		}
	}
}

// TestSgemm runs Sgemm and every micro-kernel this CPU supports (the
// portable Go one included) with 1 to 3 threads on every case.
func TestSgemm(t *testing.T) {
	names := []string{"Sgemm"}
	fs := []gemmFunc{Sgemm}
	for _, k := range kernelsAvailable() {
		for _, threads := range []int{1, 2, 3} {
			ctx := NewContext(threads)
			defer ctx.Close()
			ctx.kern = k
			names = append(names, fmt.Sprintf("%s/t%d", k.name, threads))
			fs = append(fs, ctx.Sgemm)
		}
	}
	for _, gc := range gemmCases() {
		runGemmCase(t, gc, names, fs)
	}
}

func TestSgemmAlphaZeroAndEmpty(t *testing.T) {
	c := []float32{1, 2, 3, 4}
	Sgemm(false, false, 2, 2, 0, 1, nil, 1, nil, 2, 3, c, 2)
	for i, v := range []float32{3, 6, 9, 12} {
		if c[i] != v {
			t.Fatalf("k=0: c = %v, want beta*c", c)
		}
	}
	Sgemm(false, false, 2, 2, 5, 0, nil, 5, nil, 2, 0, c, 2)
	for _, v := range c {
		if v != 0 {
			t.Fatalf("alpha=0 beta=0: c = %v, want zeros", c)
		}
	}
	Sgemm(false, false, 0, 0, 0, 1, nil, 1, nil, 1, 0, nil, 1)
}

// TestSgemmBatched compares SgemmBatched with a loop of Sgemm calls for the
// three batch modes (shared A, independent, summed into one C) on every
// micro-kernel.
func TestSgemmBatched(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	cases := []struct {
		tA, tB  bool
		m, n, k int
		count   int
		shareA  bool
		beta    float32
	}{
		{false, false, 16, 1, 8, 64, true, 0},
		{false, false, 32, 49, 24, 5, true, 0},
		{true, false, 24, 64, 32, 3, true, 1},
		{false, true, 32, 24, 64, 4, false, 0.5},
		{true, true, 7, 9, 11, 6, false, 0},
		{false, false, 130, 17, 100, 2, true, 0},
		{false, true, 40, 4, 50, 33, true, 2},
		{true, true, 19, 3, 77, 9, true, 0},
		{false, false, 64, 16, 64, 64, true, 0},
		{false, true, 33, 40, 16, 20, false, 1},
		{true, false, 40, 33, 9, 30, false, 0},
		{true, true, 50, 1, 40, 70, true, 0.5},
		{false, true, 7, 1, 3, 9, true, 0},
		{false, false, 24, 4, 40, 37, true, 0},
		{true, false, 17, 16, 33, 5, true, 0},
		{false, false, 8, 7, 300, 11, true, 0},
		{false, false, 30, 3, 20, 23, true, 1},
		{false, false, 19, 4, 33, 40, true, 0},
		{false, false, 40, 8, 9, 21, true, 0},
		{true, false, 9, 16, 70, 7, true, 0},
		{false, true, 20, 40, 1, 50, false, 0},
		{true, false, 33, 7, 1, 9, false, 2},
	}
	for _, kern := range kernelsAvailable() {
		ctx := NewContext(2)
		ctx.kern = kern
		for _, tc := range cases {
			for _, mode := range []struct {
				sum   bool
				alpha float32 // 1 exercises the unscaled store paths
			}{{false, 1}, {false, 1.5}, {true, 1}, {true, 1.5}} {
				sum, alpha := mode.sum, mode.alpha
				ar, ac := tc.m, tc.k
				if tc.tA {
					ar, ac = tc.k, tc.m
				}
				br, bc := tc.k, tc.n
				if tc.tB {
					br, bc = tc.n, tc.k
				}
				sa := ar*ac + 3
				if tc.shareA && !sum {
					sa = 0
				}
				sb, sc := br*bc+1, tc.m*tc.n+2
				if sum {
					sc = 0
				}
				a := randSlice(r, sa*tc.count+ar*ac)
				b := randSlice(r, sb*tc.count)
				c := randSlice(r, sc*tc.count+tc.m*tc.n)
				if tc.beta == 0 {
					for i := range c {
						c[i] = float32(math.NaN())
					}
				}
				want := append([]float32(nil), c...)
				for i := 0; i < tc.count; i++ {
					beta := tc.beta
					if sum && i > 0 {
						beta = 1
					}
					Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, alpha, a[i*sa:], ac, b[i*sb:], bc, beta, want[i*sc:], tc.n)
				}
				ctx.SgemmBatched(tc.tA, tc.tB, tc.m, tc.n, tc.k, alpha, a, ac, sa, b, bc, sb, tc.beta, c, tc.n, sc, tc.count)
				for i := range c {
					if math.Float32bits(c[i]) == math.Float32bits(want[i]) {
						continue
					}
					if d := math.Abs(float64(c[i] - want[i])); !(d <= 1e-4*(float64(tc.count)+math.Abs(float64(want[i])))) {
						t.Fatalf("%s %+v sum=%v: c[%d] = %g, want %g", kern.name, tc, sum, i, c[i], want[i])
					}
				}
			}
		}
		ctx.Close()
	}
}

// TestNoAllocs checks that steady-state kernel calls through a Context
// allocate nothing.
func TestNoAllocs(t *testing.T) {
	ctx := NewContext(2)
	defer ctx.Close()
	const m, n, k = 128, 196, 128
	a, b, c := make([]float32, m*k), make([]float32, 1000*k), make([]float32, 1000*m)
	g, err := NewConvGeom(16, 14, 14, 3, 3, [2]int{2, 2}, [4]int{1, 1, 1, 1}, [2]int{1, 1})
	if err != nil {
		t.Fatal(err)
	}
	in, w, bias := make([]float32, 4*16*14*14), make([]float32, 16*9), make([]float32, 16)
	out := make([]float32, 4*16*g.OH*g.OW)
	din, dw := make([]float32, len(in)), make([]float32, len(w))
	run := func() {
		ctx.Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
		ctx.Sgemm(true, true, m, n, k, 1, a, m, b, k, 0.5, c, n)
		ctx.Sgemm(false, true, 1, 1000, k, 1, a, k, b, k, 0, c, 1000)
		ctx.Sgemm(true, false, m, 1, k, 1, a, m, b, 1, 1, c, 1)
		ctx.SgemmBatched(false, false, m, 49, k, 1, a, k, 0, b, 49, k*49, 0, c, 49, m*49, 4)
		ctx.SgemmBatched(false, true, 16, 16, 49, 1, a, 49, 16*49, b, 49, 16*49, 0, c, 16, 0, 4)
		DepthwiseConv2D(ctx, g, 4, in, w, bias, out)
		DepthwiseConv2DBackward(ctx, g, 4, in, w, out, din, dw, bias)
		ctx.Conv2D(g, 4, 8, in, a, out, ReluEpilogue(bias, nil))
		ctx.Conv2DBackward(g, 4, 8, in, a, out, din, b, bias)
		ReluInPlace(c)
	}
	run()
	if allocs := testing.AllocsPerRun(10, run); allocs != 0 {
		t.Fatalf("steady-state kernel calls allocate %v times per run", allocs)
	}
}

// benchShapes are the pointwise-convolution GEMMs of MobileNetV1 at 224x224
// (M = Cout, N = H*W, K = Cin) plus its classifier and a 32x32-fixture shape.
var benchShapes = [][3]int{
	{64, 12544, 32}, {128, 3136, 64}, {128, 3136, 128}, {256, 784, 128},
	{256, 784, 256}, {512, 196, 256}, {512, 196, 512}, {1024, 49, 512},
	{1024, 49, 1024}, {1000, 1, 1024}, {128, 64, 128},
}

func BenchmarkSgemmKernels(b *testing.B) {
	for _, k := range kernelsAvailable() {
		for _, s := range benchShapes {
			m, n, kk := s[0], s[1], s[2]
			b.Run(fmt.Sprintf("%s/%dx%dx%d", k.name, m, n, kk), func(b *testing.B) {
				ctx := NewContext(1)
				ctx.kern = k
				r := rand.New(rand.NewPCG(1, 2))
				a, bb, c := randSlice(r, m*kk), randSlice(r, kk*n), make([]float32, m*n)
				benchFLOPs(b, threadCPUTime, 2*float64(m*n*kk), func() {
					ctx.Sgemm(false, false, m, n, kk, 1, a, kk, bb, n, 0, c, n)
				})
			})
		}
	}
}

func BenchmarkSgemm(b *testing.B) {
	for _, threads := range []int{1, 2} {
		for _, s := range benchShapes {
			m, n, k := s[0], s[1], s[2]
			b.Run(fmt.Sprintf("t%d/%dx%dx%d", threads, m, n, k), func(b *testing.B) {
				ctx := NewContext(threads)
				defer ctx.Close()
				r := rand.New(rand.NewPCG(1, 2))
				a, bb, c := randSlice(r, m*k), randSlice(r, k*n), make([]float32, m*n)
				benchFLOPs(b, processCPUTime, 2*float64(m*n*k), func() {
					ctx.Sgemm(false, false, m, n, k, 1, a, k, bb, n, 0, c, n)
				})
			})
		}
	}
}
