package svd

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 7)) }

func TestParseResidual(t *testing.T) {
	cases := []struct {
		in   string
		want ResidualKind
		err  bool
	}{
		{"none", KindNone, false},
		{"Identity", KindIdentity, false},
		{" diag ", KindDiag, false},
		{"dw3", KindDepthwise(3), false},
		{"dw5", KindDepthwise(5), false},
		{"dw3x3", KindDepthwise(3), false},
		{"dw1", KindDepthwise(1), false},
		{"dw4", ResidualKind{}, true},
		{"dw3x5", ResidualKind{}, true},
		{"dw", ResidualKind{}, true},
		{"dw-3", ResidualKind{}, true},
		{"dw99", ResidualKind{}, true},
		{"full", ResidualKind{}, true},
		{"", ResidualKind{}, true},
	}
	for _, c := range cases {
		got, err := ParseResidual(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseResidual(%q) = %v, %v", c.in, got, err)
		}
		if err == nil {
			back, err := ParseResidual(got.String())
			if err != nil || back != got {
				t.Errorf("round trip of %v: %v, %v", got, back, err)
			}
		}
	}
	for _, c := range []struct {
		k    ResidualKind
		c, p int
	}{{KindNone, 64, 0}, {KindIdentity, 64, 0}, {KindDiag, 64, 64}, {KindDepthwise(3), 64, 576}} {
		if got := c.k.Params(c.c); got != c.p {
			t.Errorf("%v.Params(%d) = %d, want %d", c.k, c.c, got, c.p)
		}
	}
}

func TestBadArguments(t *testing.T) {
	g := newRand(41)
	w := gaussian(g, 16*16, 0.1)
	nan := append([]float32(nil), w...)
	nan[5] = float32(math.NaN())
	eye := make([]float64, 16*16)
	for i := 0; i < 16; i++ {
		eye[i*16+i] = 1
	}
	asym := append([]float64(nil), eye...)
	asym[1] = 0.5
	negDiag := append([]float64(nil), eye...)
	negDiag[0] = -1
	covNaN := append([]float64(nil), eye...)
	covNaN[3] = math.Inf(1)
	cases := []struct {
		name string
		call func() error
		want string
	}{
		{"short weight", func() error { _, err := Factorize(w[:10], 16, 16, 4, KindNone, Options{}); return err }, "values"},
		{"zero shape", func() error { _, err := Factorize(nil, 0, 16, 4, KindNone, Options{}); return err }, "positive"},
		{"rank 0", func() error { _, err := Factorize(w, 16, 16, 0, KindNone, Options{}); return err }, "rank 0"},
		{"rank too big", func() error { _, err := Factorize(w, 16, 16, 17, KindNone, Options{}); return err }, "rank 17"},
		{"NaN weight", func() error { _, err := Factorize(nan, 16, 16, 4, KindNone, Options{}); return err }, "NaN"},
		{"identity non-square", func() error { _, err := Factorize(w, 8, 32, 4, KindIdentity, Options{}); return err }, "square"},
		{"diag non-square", func() error { _, err := Factorize(w, 32, 8, 4, KindDiag, Options{}); return err }, "square"},
		{"even depthwise", func() error { _, err := Factorize(w, 16, 16, 4, KindDepthwise(4), Options{}); return err }, "odd"},
		{"unknown kind", func() error { _, err := Factorize(w, 16, 16, 4, ResidualKind{Type: 9}, Options{}); return err }, "unknown"},
		{"negative option", func() error { _, err := Factorize(w, 16, 16, 4, KindNone, Options{MaxIter: -1}); return err }, "negative"},
		{"NaN tol", func() error { _, err := Factorize(w, 16, 16, 4, KindNone, Options{Tol: math.NaN()}); return err }, "finite"},
		{"nil cov", func() error { _, err := FactorizeData(w, 16, 16, 4, KindNone, nil, Options{}); return err }, "nil"},
		{"short cov", func() error { _, err := FactorizeData(w, 16, 16, 4, KindNone, eye[:20], Options{}); return err }, "covariance has 20"},
		{"asymmetric cov", func() error { _, err := FactorizeData(w, 16, 16, 4, KindNone, asym, Options{}); return err }, "symmetric"},
		{"negative variance", func() error { _, err := FactorizeData(w, 16, 16, 4, KindNone, negDiag, Options{}); return err }, "negative"},
		{"infinite cov", func() error { _, err := FactorizeData(w, 16, 16, 4, KindNone, covNaN, Options{}); return err }, "Inf"},
		{"zero cov", func() error {
			_, err := FactorizeData(w, 16, 16, 4, KindNone, make([]float64, 256), Options{})
			return err
		}, "zero"},
		{"nil factors", func() error { _, err := OutputError(w, nil, eye); return err }, "nil"},
		{"factors mismatch", func() error {
			_, err := OutputError(w, &Factors{Rank: 2, In: 16, Out: 16, A: make([]float32, 3)}, eye)
			return err
		}, "rank 2"},
		{"spectrum bad kind", func() error { _, err := Spectrum(w, 8, 32, KindIdentity, Options{}); return err }, "square"},
		{"spectrum rank", func() error { _, err := Spectrum(w, 16, 16, KindDiag, Options{SpectrumRank: 17}); return err }, "SpectrumRank"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

// TestZeroAndDegenerate covers matrices with nothing to factor.
func TestZeroAndDegenerate(t *testing.T) {
	n := 80
	zero := make([]float32, n*n)
	eye := make([]float32, n*n)
	for i := 0; i < n; i++ {
		eye[i*n+i] = 1
	}
	for _, c := range []struct {
		name string
		w    []float32
		kind ResidualKind
	}{
		{"zero none", zero, KindNone},
		{"identity with identity residual", eye, KindIdentity},
		{"identity with diag residual", eye, KindDiag},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := Factorize(c.w, n, n, 8, c.kind, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if d := reconstruct(t, f); c.kind.Type != None && relDiff(d, toDense(c.w, n, n)) > 1e-6 {
				t.Errorf("not reproduced")
			}
			for _, v := range append(append([]float32(nil), f.A...), f.B...) {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatal("non-finite factor")
				}
			}
		})
	}
}

func TestDefaultLambdaRankDeficient(t *testing.T) {
	g := newRand(42)
	n, r := 64, 16
	w := gaussian(g, n*n, 0.1)
	cov := correlatedCov(g, n, 20) // rank 20 < 64
	fd, err := FactorizeData(w, n, n, r, KindDiag, cov, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ff, _ := Factorize(w, n, n, r, KindDiag, Options{})
	free, _ := OutputError(w, ff, cov)
	if math.IsNaN(fd.OutErr) || fd.OutErr > free {
		t.Errorf("output error %g (data-free %g)", fd.OutErr, free)
	}
}

func TestFactorizeAll(t *testing.T) {
	g := newRand(43)
	var jobs []Job
	for i, c := range []int{40, 96, 64, 128, 32} {
		kind := []ResidualKind{KindNone, KindIdentity, KindDiag, KindDepthwise(3), KindNone}[i]
		j := Job{Name: string(rune('a' + i)), W: gaussian(g, c*c, 0.1), Out: c, In: c, Rank: c / 4, Kind: kind}
		if i == 4 {
			j.Cov = correlatedCov(g, c, 100)
		}
		jobs = append(jobs, j)
	}
	got, err := FactorizeAll(context.Background(), jobs, Options{}, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i, j := range jobs {
		var want *Factors
		if j.Cov != nil {
			want, err = FactorizeData(j.W, j.Out, j.In, j.Rank, j.Kind, j.Cov, Options{})
		} else {
			want, err = Factorize(j.W, j.Out, j.In, j.Rank, j.Kind, Options{})
		}
		if err != nil {
			t.Fatal(err)
		}
		if got[i].RelErr != want.RelErr || got[i].Residual != j.Kind {
			t.Errorf("job %d: RelErr %g, sequential %g", i, got[i].RelErr, want.RelErr)
		}
		for k := range want.A {
			if got[i].A[k] != want.A[k] {
				t.Fatalf("job %d: factors differ from the sequential run", i)
			}
		}
	}
	bad := append([]Job(nil), jobs...)
	bad[2].Rank = 0
	if _, err := FactorizeAll(context.Background(), bad, Options{}, 2); err == nil || !strings.Contains(err.Error(), `layer "c"`) {
		t.Errorf("error %v, want one naming layer c", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := FactorizeAll(ctx, jobs, Options{}, 2); err == nil {
		t.Error("cancelled context: no error")
	}
}

// TestCustomSgemm checks that Options.Sgemm is used and gives the same
// factorization quality as the default.
func TestCustomSgemm(t *testing.T) {
	n, r := 200, 50
	s := expSpectrum(n, 0.46)
	w := withSpectrum(newRand(44), n, n, s)
	var calls atomic.Int64
	counting := func(transA, transB bool, m, nn, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
		calls.Add(1)
		GonumSgemm(transA, transB, m, nn, k, alpha, a, lda, b, ldb, beta, c, ldc)
	}
	f, err := Factorize(w, n, n, r, KindNone, Options{Sgemm: counting})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() == 0 {
		t.Error("custom Sgemm not called")
	}
	if opt := OptimalRelErr(s, r); math.Abs(f.RelErr-opt) > 1e-4 {
		t.Errorf("RelErr %.7f, optimum %.7f", f.RelErr, opt)
	}
	calls.Store(0)
	if _, err := Factorize(w, n, n, r, KindNone, Options{Sgemm: counting, Precise: true}); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 0 {
		t.Error("precise mode used the float32 Sgemm")
	}
}

// TestExtremeScales checks weights far outside float32's comfortable range
// for Gram products (the float32 search scales its operands).
func TestExtremeScales(t *testing.T) {
	n, r := 200, 50
	s := expSpectrum(n, 0.46)
	base := withSpectrum(newRand(45), n, n, s)
	for _, scale := range []float32{1e25, 1e-25} {
		w := make([]float32, len(base))
		for i, v := range base {
			w[i] = v * scale
		}
		f, err := Factorize(w, n, n, r, KindNone, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if opt := OptimalRelErr(s, r); math.Abs(f.RelErr-opt) > 1e-4 {
			t.Errorf("scale %g: RelErr %.7f, optimum %.7f", scale, f.RelErr, opt)
		}
	}
}

// TestOptimalRelErr checks the Eckart–Young bound on exact cases.
func TestOptimalRelErr(t *testing.T) {
	for _, c := range []struct {
		s    []float64
		r    int
		want float64
	}{
		{[]float64{4, 3}, 1, 0.6},       // sqrt(9/25)
		{[]float64{4, 3}, 0, 1},         // rank 0 keeps nothing
		{[]float64{4, 3}, 2, 0},         // full rank is exact
		{[]float64{2, 2, 2, 2}, 3, 0.5}, // sqrt(4/16)
	} {
		if got := OptimalRelErr(c.s, c.r); math.Abs(got-c.want) > 1e-15 {
			t.Errorf("OptimalRelErr(%v, %d) = %v, want %v", c.s, c.r, got, c.want)
		}
	}
}
