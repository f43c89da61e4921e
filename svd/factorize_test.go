package svd

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// TestFullRankReproduces checks the exact identity at r = min(out, in): the
// factors reproduce W to float32 round-off for every residual.
func TestFullRankReproduces(t *testing.T) {
	g := rand.New(rand.NewPCG(11, 1))
	cases := []struct {
		name    string
		out, in int
		kind    ResidualKind
	}{
		{"none square", 48, 48, KindNone},
		{"none wide", 24, 40, KindNone},
		{"none tall", 40, 24, KindNone},
		{"identity", 48, 48, KindIdentity},
		{"diag", 32, 32, KindDiag},
		{"dw3", 32, 32, KindDepthwise(3)},
		{"none subspace path", 160, 160, KindNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := gaussian(g, c.out*c.in, 0.1)
			r := min(c.out, c.in)
			f, err := Factorize(w, c.out, c.in, r, c.kind, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if f.Out != c.out || f.In != c.in || f.Rank != r || len(f.A) != r*c.in || len(f.B) != c.out*r {
				t.Fatalf("shapes: out %d in %d rank %d len(A) %d len(B) %d", f.Out, f.In, f.Rank, len(f.A), len(f.B))
			}
			d := relDiff(reconstruct(t, f), toDense(w, c.out, c.in))
			if d > 1e-6 {
				t.Errorf("‖BA+R − W‖/‖W‖ = %g, want float32 round-off (< 1e-6)", d)
			}
			if f.RelErr > 1e-6 {
				t.Errorf("RelErr = %g, want ~0", f.RelErr)
			}
		})
	}
}

// TestEckartYoung compares the error of the factors with the optimum
// computed from gonum's exact SVD of the factored matrix.
func TestEckartYoung(t *testing.T) {
	g := rand.New(rand.NewPCG(12, 1))
	lowRank := make([]float64, 120)
	for i := range 10 {
		lowRank[i] = float64(10 - i)
	}
	clustered := make([]float64, 200)
	for i := range clustered {
		clustered[i] = 1
		if i >= 50 {
			clustered[i] = 0.5
		}
	}
	cases := []struct {
		name    string
		out, in int
		w       []float32
		rank    int
		kind    ResidualKind
		opts    Options
	}{
		{"gaussian 64 r16", 64, 64, gaussian(g, 64*64, 1), 16, KindNone, Options{}},
		{"gaussian 64 r16 identity", 64, 64, gaussian(g, 64*64, 0.2), 16, KindIdentity, Options{}},
		{"exp 200 r50", 200, 200, withSpectrum(g, 200, 200, expSpectrum(200, 0.46)), 50, KindNone, Options{}},
		{"exp 200 r50 identity", 200, 200, withSpectrum(g, 200, 200, expSpectrum(200, 0.46)), 50, KindIdentity, Options{}},
		{"steep 200 r20", 200, 200, withSpectrum(g, 200, 200, expSpectrum(200, 0.05)), 20, KindNone, Options{}},
		{"flat gaussian 256 r64", 256, 256, gaussian(g, 256*256, 1), 64, KindNone, Options{}},
		{"rank 10 matrix r20", 120, 120, withSpectrum(g, 120, 120, lowRank), 20, KindNone, Options{}},
		{"clustered at the cut", 200, 200, withSpectrum(g, 200, 200, clustered), 40, KindNone, Options{}},
		{"wide 150x300 r30", 150, 300, withSpectrum(g, 150, 300, expSpectrum(150, 0.3)), 30, KindNone, Options{}},
		{"tall 300x150 r30", 300, 150, withSpectrum(g, 300, 150, expSpectrum(150, 0.3)), 30, KindNone, Options{}},
		{"exact solver", 200, 200, withSpectrum(g, 200, 200, expSpectrum(200, 0.46)), 50, KindNone, Options{Exact: true}},
		{"precise products", 200, 200, withSpectrum(g, 200, 200, expSpectrum(200, 0.46)), 50, KindNone, Options{Precise: true}},
		{"precise identity", 200, 200, withSpectrum(g, 200, 200, expSpectrum(200, 0.46)), 50, KindIdentity, Options{Precise: true}},
		{"degree 2 oversample 40", 200, 200, withSpectrum(g, 200, 200, expSpectrum(200, 0.46)), 50, KindNone, Options{Degree: 2, Oversample: 40}},
		{"larger 512 r128", 512, 512, withSpectrum(g, 512, 512, expSpectrum(512, 0.46)), 128, KindNone, Options{}},
		{"half rank", 200, 200, withSpectrum(g, 200, 200, expSpectrum(200, 0.46)), 100, KindNone, Options{}},
		{"three quarter rank", 200, 200, withSpectrum(g, 200, 200, expSpectrum(200, 0.46)), 150, KindNone, Options{}},
		{"rank 1", 200, 200, withSpectrum(g, 200, 200, expSpectrum(200, 0.46)), 1, KindNone, Options{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := Factorize(c.w, c.out, c.in, c.rank, c.kind, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			m := toDense(c.w, c.out, c.in)
			if c.kind.Type == Identity {
				for i := 0; i < c.out; i++ {
					m.Set(i, i, m.At(i, i)-1)
				}
			}
			sv := exactSV(t, m)
			wNorm := mat.Norm(toDense(c.w, c.out, c.in), 2)
			mNorm := mat.Norm(m, 2)
			opt := OptimalRelErr(sv, c.rank) * mNorm / wNorm
			direct := relDiff(reconstruct(t, f), toDense(c.w, c.out, c.in))
			if math.Abs(f.RelErr-opt) > 1e-4 || math.Abs(direct-opt) > 1e-4 {
				t.Errorf("RelErr %.7f, measured %.7f, Eckart–Young optimum %.7f", f.RelErr, direct, opt)
			}
			// Sigma holds the kept singular values; factors are balanced.
			for k := 0; k < c.rank; k++ {
				// Directions next to the cut converge last and barely
				// matter for the error; check the leading half.
				if k < (c.rank+1)/2 && math.Abs(f.Sigma[k]-sv[k]) > 1e-3*sv[0] {
					t.Errorf("Sigma[%d] = %g, exact %g", k, f.Sigma[k], sv[k])
					break
				}
				var nb, na float64
				for i := 0; i < f.Out; i++ {
					nb += float64(f.B[i*f.Rank+k]) * float64(f.B[i*f.Rank+k])
				}
				for j := 0; j < f.In; j++ {
					na += float64(f.A[k*f.In+j]) * float64(f.A[k*f.In+j])
				}
				if math.Abs(math.Sqrt(nb)-math.Sqrt(na)) > 1e-4*math.Sqrt(sv[0]) || math.Abs(nb-f.Sigma[k]) > 1e-4*sv[0] {
					t.Errorf("factor %d not balanced: ‖B_k‖² %g ‖A_k‖² %g σ %g", k, nb, na, f.Sigma[k])
					break
				}
			}
		})
	}
}

// TestDiagNeverWorse checks that the diag residual fits at least as well as
// none and identity, and that it recovers W = diag(d) + rank-r exactly.
func TestDiagNeverWorse(t *testing.T) {
	g := rand.New(rand.NewPCG(13, 1))
	n := 96
	nearIdentity := gaussian(g, n*n, 0.02)
	for i := 0; i < n; i++ {
		nearIdentity[i*n+i] += 1
	}
	diagDominant := gaussian(g, n*n, 0.05)
	for i := 0; i < n; i++ {
		diagDominant[i*n+i] += float32(0.5 + g.Float64())
	}
	cases := []struct {
		name string
		w    []float32
		rank int
	}{
		{"gaussian", gaussian(g, n*n, 0.1), 24},
		{"near identity", nearIdentity, 24},
		{"diag dominant", diagDominant, 24},
		{"exp spectrum", withSpectrum(g, n, n, expSpectrum(n, 0.46)), 24},
		{"rank 1", gaussian(g, n*n, 0.1), 1},
		{"large 320", withSpectrum(g, 320, 320, expSpectrum(320, 0.46)), 80},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nn := int(math.Sqrt(float64(len(c.w))))
			errs := map[string]float64{}
			var fd *Factors
			for _, k := range []ResidualKind{KindNone, KindIdentity, KindDiag} {
				f, err := Factorize(c.w, nn, nn, c.rank, k, Options{})
				if err != nil {
					t.Fatal(err)
				}
				errs[k.String()] = f.RelErr
				direct := relDiff(reconstruct(t, f), toDense(c.w, nn, nn))
				if math.Abs(direct-f.RelErr) > 1e-5 {
					t.Errorf("%v: RelErr %g but measured %g", k, f.RelErr, direct)
				}
				if k.Type == Diag {
					fd = f
				}
			}
			if errs["diag"] > math.Min(errs["none"], errs["identity"])+1e-9 {
				t.Errorf("diag %.6f worse than none %.6f or identity %.6f", errs["diag"], errs["none"], errs["identity"])
			}
			if len(fd.Diag) != nn || fd.Taps != nil {
				t.Errorf("diag factors: len(Diag) %d, Taps %v", len(fd.Diag), fd.Taps != nil)
			}
			t.Logf("none %.5f identity %.5f diag %.5f (%d alternations)", errs["none"], errs["identity"], errs["diag"], fd.Iterations)
		})
	}
	t.Run("diag plus low rank", func(t *testing.T) {
		// W = diag(d) + U Vᵀ with rank 8: the diag residual at rank 8 should
		// find an (almost) exact fit, which none and identity cannot.
		n, r := 64, 8
		u, v := gaussian(g, n*r, 1), gaussian(g, r*n, 1)
		w := make([]float32, n*n)
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				s := 0.0
				for k := 0; k < r; k++ {
					s += float64(u[i*r+k]) * float64(v[k*n+j])
				}
				w[i*n+j] = float32(s / 8)
			}
			w[i*n+i] += float32(1 + 2*g.Float64())
		}
		f, err := Factorize(w, n, n, r, KindDiag, Options{MaxIter: 2000, Tol: 1e-12})
		if err != nil {
			t.Fatal(err)
		}
		fn, _ := Factorize(w, n, n, r, KindNone, Options{})
		if f.RelErr > 1e-3 || f.RelErr > fn.RelErr/50 {
			t.Errorf("diag error %g (none %g), want an almost exact fit", f.RelErr, fn.RelErr)
		}
	})
}

// TestDepthwiseTaps checks the C x K x K layout of the depthwise residual.
func TestDepthwiseTaps(t *testing.T) {
	g := rand.New(rand.NewPCG(14, 1))
	n, r := 40, 10
	w := gaussian(g, n*n, 0.1)
	fd, err := Factorize(w, n, n, r, KindDiag, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []int{1, 3, 5} {
		f, err := Factorize(w, n, n, r, KindDepthwise(k), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Taps) != n*k*k {
			t.Fatalf("dw%d: %d taps, want %d", k, len(f.Taps), n*k*k)
		}
		for c := 0; c < n; c++ {
			for y := 0; y < k; y++ {
				for x := 0; x < k; x++ {
					v := f.Taps[c*k*k+y*k+x]
					want := float32(0)
					if y == k/2 && x == k/2 {
						want = fd.Diag[c]
					}
					if v != want {
						t.Fatalf("dw%d tap[%d][%d][%d] = %g, want %g", k, c, y, x, v, want)
					}
				}
			}
		}
		if f.RelErr != fd.RelErr || f.Residual != KindDepthwise(k) {
			t.Errorf("dw%d: RelErr %g (diag %g), residual %v", k, f.RelErr, fd.RelErr, f.Residual)
		}
		for i := range f.A {
			if f.A[i] != fd.A[i] {
				t.Fatalf("dw%d: A differs from the diag factors", k)
			}
		}
	}
}

func TestSpectrum(t *testing.T) {
	g := rand.New(rand.NewPCG(15, 1))
	for _, c := range []struct {
		name    string
		out, in int
		kind    ResidualKind
	}{
		{"none square", 80, 80, KindNone},
		{"none wide", 50, 90, KindNone},
		{"none tall", 90, 50, KindNone},
		{"identity", 80, 80, KindIdentity},
		{"diag", 80, 80, KindDiag},
		{"dw3", 80, 80, KindDepthwise(3)},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := gaussian(g, c.out*c.in, 0.1)
			opts := Options{SpectrumRank: 20}
			s, err := Spectrum(w, c.out, c.in, c.kind, opts)
			if err != nil {
				t.Fatal(err)
			}
			m := toDense(w, c.out, c.in)
			switch c.kind.Type {
			case Identity:
				for i := 0; i < c.out; i++ {
					m.Set(i, i, m.At(i, i)-1)
				}
			case Diag, Depthwise:
				f, err := Factorize(w, c.out, c.in, 20, c.kind, opts)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < c.out; i++ {
					m.Set(i, i, m.At(i, i)-float64(f.Diag[i]))
				}
			}
			want := exactSV(t, m)
			if len(s) != len(want) {
				t.Fatalf("%d values, want %d", len(s), len(want))
			}
			for i := range s {
				if math.Abs(s[i]-want[i]) > 1e-6*want[0] {
					t.Fatalf("σ[%d] = %.9g, exact %.9g", i, s[i], want[i])
				}
			}
		})
	}
}

// TestGramAccuracy verifies that singular values from the float64 Gram matrix
// keep float32-level accuracy on a weight with a wide spectrum.
func TestGramAccuracy(t *testing.T) {
	g := rand.New(rand.NewPCG(16, 1))
	n := 128
	w := withSpectrum(g, n, n, expSpectrum(n, 0.08)) // σ from 1 down to 5e-6
	s, err := Spectrum(w, n, n, KindNone, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := exactSV(t, toDense(w, n, n))
	for i := range s {
		if math.Abs(s[i]-want[i]) > 1e-7*want[0] {
			t.Fatalf("σ[%d] = %.9g, exact %.9g: Gram loses float32 accuracy", i, s[i], want[i])
		}
	}
}
