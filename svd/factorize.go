package svd

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// Options tunes the factorization. The zero value selects the defaults.
type Options struct {
	// MaxIter bounds the alternations of the diag residual (default 100).
	MaxIter int
	// Tol stops the diag alternation once an alternation lowers the squared
	// error by less than Tol times its current value (default 1e-4: the
	// gains shrink geometrically, so the relative error is then within
	// about 1e-4 of the fixed point's; each alternation costs about a third
	// of a converged solve).
	Tol float64
	// EigenTol stops the subspace iteration once the estimated gap between
	// the captured squared norm and the optimum is below EigenTol times the
	// smaller of the captured and the discarded squared norm (default 1e-4,
	// which keeps the relative error within about 5e-5 of its optimum).
	EigenTol float64
	// Oversample is the number of basis vectors kept beyond the rank
	// (default max(16, rank/8)).
	Oversample int
	// Degree is the Chebyshev filter degree per subspace round (default 5).
	Degree int
	// Seed seeds the random start of the subspace iteration.
	Seed uint64
	// Exact uses gonum's dense symmetric eigensolver instead of subspace
	// iteration (slow for large matrices; a reference).
	Exact bool
	// Precise runs the products that steer the subspace iteration in
	// float64 with gonum instead of float32 (slower; the subspace found is
	// the same to about float32 precision, and every other step, including
	// the factors and errors, is float64 in both modes).
	Precise bool
	// Sgemm runs the float32 products (default GonumSgemm, pure Go). A
	// faster kernel, such as the engine's, can be plugged in here; it must
	// be safe for concurrent use.
	Sgemm Sgemm
	// Lambda regularizes data-aware factorization: the covariance Σ is
	// replaced by Σ + Lambda·mean(diag Σ)·I (default 1e-4; must be >= 0,
	// use a tiny positive value to effectively disable it).
	Lambda float64
	// SpectrumRank is the rank at which Spectrum finds the diag fixed point
	// for diag and depthwise residuals (default ceil(C/4)).
	SpectrumRank int
}

// Defaults for Options.
const (
	DefaultMaxIter  = 100
	DefaultTol      = 1e-4
	DefaultEigenTol = 1e-4
	DefaultLambda   = 1e-4
)

func (o Options) withDefaults() (Options, error) {
	if o.MaxIter < 0 || o.Tol < 0 || o.EigenTol < 0 || o.Oversample < 0 || o.Degree < 0 || o.Lambda < 0 || o.SpectrumRank < 0 {
		return o, errors.New("svd options: MaxIter, Tol, EigenTol, Oversample, Degree, Lambda and SpectrumRank must not be negative")
	}
	if math.IsNaN(o.Tol) || math.IsNaN(o.EigenTol) || math.IsNaN(o.Lambda) || math.IsInf(o.Lambda, 0) {
		return o, errors.New("svd options: Tol, EigenTol and Lambda must be finite numbers")
	}
	if o.MaxIter == 0 {
		o.MaxIter = DefaultMaxIter
	}
	if o.Tol == 0 {
		o.Tol = DefaultTol
	}
	if o.EigenTol == 0 {
		o.EigenTol = DefaultEigenTol
	}
	if o.Lambda == 0 {
		o.Lambda = DefaultLambda
	}
	if o.Degree == 1 {
		o.Degree = 2
	}
	return o, nil
}

func (o Options) eigen() eigenConfig {
	return eigenConfig{oversample: o.Oversample, tol: o.EigenTol, degree: o.Degree, seed: o.Seed, exact: o.Exact}
}

// Factors is an LPR factorization W ≈ B A + R of a C_out x C_in weight.
type Factors struct {
	// A is the rank x In down-projection, row-major.
	A []float32
	// B is the Out x rank up-projection, row-major.
	B []float32
	// Rank, In and Out are the shapes.
	Rank, In, Out int
	// Residual is the residual kind.
	Residual ResidualKind
	// Diag is the per-channel residual scale d (length C) for diag and
	// depthwise residuals; nil otherwise.
	Diag []float32
	// Taps is the depthwise residual kernel, C x K x K row-major, whose
	// centre tap is Diag and whose other taps are zero; nil unless the
	// residual is depthwise.
	Taps []float32
	// Sigma holds the Rank singular values of the factored matrix (W, W − I
	// or W − diag(d); whitened for data-aware factors) that B A keeps.
	Sigma []float64
	// RelErr is ‖W − (B A + R)‖_F / ‖W‖_F.
	RelErr float64
	// OutErr is the relative output error ‖(W − R − B A) X‖_F / ‖W X‖_F
	// measured with the covariance given to FactorizeData (0 for
	// data-free factors; see OutputError).
	OutErr float64
	// Iterations is the number of diag alternations performed.
	Iterations int
}

// Factorize computes the LPR factors of the out x in weight w (row-major) at
// the given rank with the given residual kind, minimizing ‖W − R − B A‖_F.
func Factorize(w []float32, out, in, rank int, kind ResidualKind, opts Options) (*Factors, error) {
	return factorize(w, out, in, rank, kind, nil, opts)
}

// FactorizeData computes LPR factors fitted to calibration activations X
// given through cov = X Xᵀ (in x in, row-major): it minimizes
// ‖(W − R − B A) X‖_F. Σ is regularized as Σ + λ·mean(diag Σ)·I.
//
// The whitened problem min ‖(M − B A) L‖ with Σ = L Lᵀ has the solution
// B A = SVD_r(M L) L⁻¹ = U_r U_rᵀ M, where U_r are the top left singular
// vectors of M L, i.e. the top eigenvectors of M Σ Mᵀ; the package computes
// it in that form, which needs no triangular inverse. The factors are
// balanced in the whitened space: B = U_r S^½, A = S^-½ U_rᵀ M, with S the
// singular values of M L.
func FactorizeData(w []float32, out, in, rank int, kind ResidualKind, cov []float64, opts Options) (*Factors, error) {
	if cov == nil {
		return nil, errors.New("factorize with data: covariance is nil (use Factorize for data-free factors)")
	}
	return factorize(w, out, in, rank, kind, cov, opts)
}

func checkWeight(w []float32, out, in int) error {
	if out < 1 || in < 1 {
		return fmt.Errorf("weight shape %dx%d: both dimensions must be positive", out, in)
	}
	if out > math.MaxInt32/in {
		return fmt.Errorf("weight shape %dx%d is too large", out, in)
	}
	if len(w) != out*in {
		return fmt.Errorf("weight has %d values, want %d for shape %dx%d", len(w), out*in, out, in)
	}
	for i, v := range w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("weight value %d (row %d, column %d) is %v", i, i/in, i%in, v)
		}
	}
	return nil
}

func checkArgs(w []float32, out, in, rank int, kind ResidualKind) error {
	if err := checkWeight(w, out, in); err != nil {
		return err
	}
	if err := kind.Validate(); err != nil {
		return err
	}
	if kind.NeedsSquare() && out != in {
		return fmt.Errorf("residual %v needs a square weight, got %dx%d (use residual none)", kind, out, in)
	}
	if rank < 1 || rank > min(out, in) {
		return fmt.Errorf("rank %d out of range [1, %d] for a %dx%d weight", rank, min(out, in), out, in)
	}
	return nil
}

func factorize(w []float32, out, in, rank int, kind ResidualKind, cov []float64, opts Options) (*Factors, error) {
	if err := checkArgs(w, out, in, rank, kind); err != nil {
		return nil, fmt.Errorf("factorize: %w", err)
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("factorize: %w", err)
	}
	var sig blas64.General
	if cov != nil {
		if sig, err = regularizedCov(cov, in, o.Lambda); err != nil {
			return nil, fmt.Errorf("factorize with data: %w", err)
		}
	}
	wm := toGeneral(w, out, in)
	// A data-free wide-or-square problem is solved on the left Gram matrix;
	// a tall one is solved transposed, on the smaller Gram matrix.
	transposed := cov == nil && out > in
	if transposed {
		wm = transpose(wm)
	}
	pb := newProblem(wm, sig, rank, o)
	var s solution
	iters := 0
	switch kind.Type {
	case None:
		s, err = pb.solve(nil, nil, pb.cfg)
	case Identity:
		s, err = pb.solve(constant(out, 1), nil, pb.cfg)
	case Diag, Depthwise:
		s, iters, err = pb.diag()
	}
	if err != nil {
		return nil, fmt.Errorf("factorize %dx%d rank %d residual %v: %w", out, in, rank, kind, err)
	}
	f := pb.factors(s)
	if transposed {
		f.A, f.B = transposeF32(f.B, in, rank), transposeF32(f.A, rank, out)
		f.In, f.Out = in, out
	}
	f.Residual = kind
	f.Iterations = iters
	if kind.Type == Identity {
		f.Diag = nil
	}
	if kind.Type == Depthwise {
		f.Taps = centreTaps(f.Diag, kind.K)
	}
	if cov != nil {
		if f.OutErr, err = OutputError(w, f, cov); err != nil {
			return nil, fmt.Errorf("factorize with data: %w", err)
		}
	}
	return f, nil
}

// toGeneral converts a row-major float32 matrix to float64.
func toGeneral(w []float32, rows, cols int) blas64.General {
	g := newGeneral(rows, cols)
	for i, v := range w {
		g.Data[i] = float64(v)
	}
	return g
}

func transposeF32(a []float32, rows, cols int) []float32 {
	t := make([]float32, len(a))
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			t[j*rows+i] = a[i*cols+j]
		}
	}
	return t
}

func constant(n int, v float64) []float64 {
	d := make([]float64, n)
	for i := range d {
		d[i] = v
	}
	return d
}

// centreTaps returns C x K x K depthwise taps with d at the centre.
func centreTaps(d []float32, k int) []float32 {
	taps := make([]float32, len(d)*k*k)
	c := k / 2
	for i, v := range d {
		taps[i*k*k+c*k+c] = v
	}
	return taps
}

// problem holds the quantities shared by every residual of one weight:
// the weight W, the weighting Σ (identity when absent), P = W Σ and
// G0 = W Σ Wᵀ, so that H(d) = (W − D) Σ (W − D)ᵀ costs O(C²) for any d.
type problem struct {
	w    blas64.General
	sig  blas64.General // Rows == 0: identity
	p    blas64.General // W Σ (aliases w when Σ = I)
	g0   blas64.General // W Σ Wᵀ
	rank int
	opts Options
	cfg  eigenConfig
	mx   *mixed
}

func newProblem(w, sig blas64.General, rank int, o Options) *problem {
	pb := &problem{w: w, sig: sig, rank: rank, opts: o, cfg: o.eigen(), mx: newMixed(o.Precise, o.Sgemm)}
	if sig.Rows == 0 {
		pb.p = w
		if n := w.Rows; o.Precise || o.Exact || n <= 64 || 10*basisSize(n, rank, o.Oversample) > 9*n {
			pb.g0 = gram(w)
		} else {
			// The subspace iteration multiplies by a float32 copy of the
			// Gram matrix anyway, so its off-diagonal entries are formed in
			// float32 too; the diagonal, which gives the traces, stays exact.
			pb.g0 = pb.mx.gram(w)
		}
	} else {
		pb.p = newGeneral(w.Rows, w.Cols)
		mul(blas.NoTrans, blas.NoTrans, 1, w, sig, 0, pb.p)
		pb.g0 = newGeneral(w.Rows, w.Rows)
		mul(blas.NoTrans, blas.Trans, 1, pb.p, w, 0, pb.g0)
		for i := 0; i < pb.g0.Rows; i++ {
			for j := i + 1; j < pb.g0.Rows; j++ {
				v := 0.5 * (pb.g0.Data[i*pb.g0.Stride+j] + pb.g0.Data[j*pb.g0.Stride+i])
				pb.g0.Data[i*pb.g0.Stride+j], pb.g0.Data[j*pb.g0.Stride+i] = v, v
			}
		}
	}
	return pb
}

func (pb *problem) sigAt(i, j int) float64 {
	if pb.sig.Rows == 0 {
		if i == j {
			return 1
		}
		return 0
	}
	return pb.sig.Data[i*pb.sig.Stride+j]
}

// h returns H(d) = (W − D) Σ (W − D)ᵀ; d == nil means D = 0.
func (pb *problem) h(d []float64) blas64.General {
	if d == nil {
		return pb.g0
	}
	n := pb.g0.Rows
	h := cloneGeneral(pb.g0)
	ps := pb.p.Stride
	for i := 0; i < n; i++ {
		row := h.Data[i*n : i*n+n]
		for j := range row {
			v := row[j] - pb.p.Data[i*ps+j]*d[j] - d[i]*pb.p.Data[j*ps+i]
			if pb.sig.Rows != 0 {
				v += d[i] * d[j] * pb.sig.Data[i*pb.sig.Stride+j]
			} else if i == j {
				v += d[i] * d[i]
			}
			row[j] = v
		}
	}
	return h
}

// solution is a residual d with the top-rank eigenpairs of H(d).
type solution struct {
	d    []float64 // nil: no residual
	eig  eigenResult
	err2 float64 // objective: tr(H(d)) − Σ θ
}

func (pb *problem) solve(d []float64, warm *eigenResult, cfg eigenConfig) (solution, error) {
	h := pb.h(d)
	e, err := topEigen(h, pb.rank, warm, cfg, pb.mx)
	if err != nil {
		return solution{}, err
	}
	capt := 0.0
	for _, v := range e.vals {
		capt += v
	}
	return solution{d: d, eig: e, err2: math.Max(trace(h)-capt, 0)}, nil
}

// identityScreen is how close (as a ratio of squared errors) a cheap solve
// must put the identity residual to the none residual for identity to get a
// converged solve among the diag candidates.
const identityScreen = 1.5

// diag runs the alternation for the diag residual and returns the best
// solution found together with the number of alternations.
func (pb *problem) diag() (solution, int, error) {
	n := pb.w.Rows
	sNone, err := pb.solve(nil, nil, pb.cfg)
	if err != nil {
		return solution{}, 0, err
	}
	// Alternations use cheap warm-started solves; the best point gets a
	// converged solve at the end.
	warmCfg := pb.cfg
	warmCfg.maxRounds = 1
	warmCfg.degree = 2
	warmCfg.rough = true
	// The identity residual gets a converged solve only when a cheap one
	// puts it near the best candidate (for most trained weights it is far
	// worse than none).
	sID, err := pb.solve(constant(n, 1), &sNone.eig, warmCfg)
	if err != nil {
		return solution{}, 0, err
	}
	if sID.err2 < identityScreen*sNone.err2 {
		if sID, err = pb.solve(constant(n, 1), &sNone.eig, pb.cfg); err != nil {
			return solution{}, 0, err
		}
	}
	best := sNone
	if sID.err2 < best.err2 {
		best = sID
	}
	cur := best
	iters := 0
	for iters < pb.opts.MaxIter {
		dn := pb.updateD(cur)
		sn, err := pb.solve(dn, &cur.eig, warmCfg)
		if err != nil {
			return solution{}, iters, err
		}
		iters++
		improved := cur.err2 - sn.err2
		if sn.err2 < best.err2 {
			best = sn
		}
		if improved <= pb.opts.Tol*cur.err2 {
			break
		}
		cur = sn
	}
	if best.d != nil {
		final, err := pb.solve(best.d, &best.eig, pb.cfg)
		if err != nil {
			return solution{}, iters, err
		}
		if final.err2 <= best.err2 {
			best = final
		}
	}
	// The objective values above come from Ritz values of float32-level
	// products; where candidates are that close, decide by exact errors so
	// that diag is never worse than none or identity.
	margin := 1e-6 * trace(pb.g0)
	for _, c := range []*solution{&sNone, &sID} {
		if c.err2 < best.err2+margin {
			if pb.exactErr2(*c) < pb.exactErr2(best) {
				best = *c
			}
		}
	}
	if best.eig.rough {
		// A cheap solve won: make its vectors orthonormal in float64.
		var ws qrWork
		best.eig.vecs = cloneGeneral(best.eig.vecs)
		orthonormalize(best.eig.vecs, &ws)
	}
	if best.d == nil {
		best.d = make([]float64, n)
	}
	return best, iters, nil
}

// exactErr2 returns the objective of a solution computed in float64 from
// the projection C = Uᵀ (W − D): tr(H(d)) − Σ_k (C Σ Cᵀ)_kk.
func (pb *problem) exactErr2(s solution) float64 {
	n, r := pb.w.Rows, pb.rank
	m := pb.w
	if s.d != nil {
		m = cloneGeneral(pb.w)
		for i := 0; i < n; i++ {
			m.Data[i*m.Stride+i] -= s.d[i]
		}
	}
	c := newGeneral(r, m.Cols)
	mul(blas.Trans, blas.NoTrans, 1, s.eig.vecs, m, 0, c)
	capt := frob2(c)
	if pb.sig.Rows != 0 {
		cs := newGeneral(r, m.Cols)
		mul(blas.NoTrans, blas.NoTrans, 1, c, pb.sig, 0, cs)
		capt = 0
		for i, v := range cs.Data {
			capt += v * c.Data[i]
		}
	}
	return trace(pb.h(s.d)) - capt
}

// updateD returns the residual that minimizes the objective for the current
// subspace. Data-free: with U fixed, min over d and C of ‖W − D − U C‖ gives
// d_j = ((I − P) W)_jj / (I − P)_jj with P = U Uᵀ (variable projection).
// Data-aware: with B A fixed, d_i = ((W − B A) Σ)_ii / Σ_ii.
func (pb *problem) updateD(s solution) []float64 {
	n, r := pb.w.Rows, pb.rank
	u := s.eig.vecs
	k := newGeneral(r, n)
	pb.mx.gemm(blas.Trans, blas.NoTrans, 1, u, pb.w, k) // Uᵀ W
	d := make([]float64, n)
	old := func(j int) float64 {
		if s.d == nil {
			return 0
		}
		return s.d[j]
	}
	if pb.sig.Rows == 0 {
		for j := 0; j < n; j++ {
			pw, pjj := 0.0, 0.0
			for c := 0; c < r; c++ {
				ujc := u.Data[j*r+c]
				pw += ujc * k.Data[c*n+j]
				pjj += ujc * ujc
			}
			if den := 1 - pjj; den > 1e-10 {
				d[j] = (pb.w.Data[j*pb.w.Stride+j] - pw) / den
			} else {
				d[j] = old(j)
			}
		}
		return d
	}
	// C = Uᵀ(W − D) and C Σ.
	for c := 0; c < r; c++ {
		for j := 0; j < n; j++ {
			k.Data[c*n+j] -= u.Data[j*r+c] * old(j)
		}
	}
	cs := newGeneral(r, n)
	pb.mx.gemm(blas.NoTrans, blas.NoTrans, 1, k, pb.sig, cs)
	for i := 0; i < n; i++ {
		v := pb.p.Data[i*pb.p.Stride+i]
		for c := 0; c < r; c++ {
			v -= u.Data[i*r+c] * cs.Data[c*n+i]
		}
		if sii := pb.sigAt(i, i); sii > 0 {
			d[i] = v / sii
		} else {
			d[i] = old(i)
		}
	}
	return d
}

// roughProjection reports whether the projection C = Uᵀ (W − D) may be a
// float32 product: data-free, not precise, and far from an exact fit (the
// relative error is at least 0.1, so float32 rounding moves it by less than
// about 1e-5 relative) with a spectrum no wider than 1e4 across the kept
// squared singular values (so that each kept singular value keeps about
// 1e-5 relative accuracy).
func (pb *problem) roughProjection(s solution) bool {
	if pb.mx.precise || pb.sig.Rows != 0 || len(s.eig.vals) == 0 {
		return false
	}
	v := s.eig.vals
	return s.err2 >= 1e-2*(s.err2+sum(v)) && v[len(v)-1] >= 1e-4*v[0]
}

func sum(v []float64) float64 {
	t := 0.0
	for _, x := range v {
		t += x
	}
	return t
}

// factors forms balanced factors from a solution: C = Uᵀ (W − D),
// B = U S^½, A = S^-½ C, where S holds the singular values of (W − D) (or of
// (W − D) L in the whitened problem) along the computed directions: the row
// norms of C (or of C L).
func (pb *problem) factors(s solution) *Factors {
	out, in, r := pb.w.Rows, pb.w.Cols, pb.rank
	m := pb.w
	if s.d != nil {
		m = cloneGeneral(pb.w)
		for i := 0; i < out; i++ {
			m.Data[i*m.Stride+i] -= s.d[i]
		}
	}
	u := s.eig.vecs
	c := newGeneral(r, in)
	if pb.roughProjection(s) {
		pb.mx.gemm(blas.Trans, blas.NoTrans, 1, u, m, c)
	} else {
		mul(blas.Trans, blas.NoTrans, 1, u, m, 0, c)
	}
	sq := make([]float64, r) // S²
	if pb.sig.Rows == 0 {
		for k := range sq {
			for _, v := range c.Data[k*in : k*in+in] {
				sq[k] += v * v
			}
		}
	} else {
		cs := newGeneral(r, in)
		mul(blas.NoTrans, blas.NoTrans, 1, c, pb.sig, 0, cs)
		for k := range sq {
			for j := 0; j < in; j++ {
				sq[k] += cs.Data[k*in+j] * c.Data[k*in+j]
			}
		}
	}
	f := &Factors{
		A: make([]float32, r*in), B: make([]float32, out*r),
		Rank: r, In: in, Out: out, Sigma: make([]float64, r),
	}
	for k := 0; k < r; k++ {
		sk := math.Sqrt(math.Max(sq[k], 0))
		f.Sigma[k] = sk
		if sk == 0 {
			continue
		}
		h := math.Sqrt(sk)
		for i := 0; i < out; i++ {
			f.B[i*r+k] = float32(u.Data[i*r+k] * h)
		}
		for j := 0; j < in; j++ {
			f.A[k*in+j] = float32(c.Data[k*in+j] / h)
		}
	}
	w2 := frob2(pb.w)
	if w2 > 0 {
		f.RelErr = math.Sqrt(math.Max(frob2(m)-frob2(c), 0) / w2)
	}
	if s.d != nil {
		f.Diag = make([]float32, len(s.d))
		for i, v := range s.d {
			f.Diag[i] = float32(v)
		}
	}
	return f
}
