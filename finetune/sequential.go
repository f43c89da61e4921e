package finetune

import (
	"context"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/engine/kernels"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// SequentialLambda regularizes the input covariance inverted by
// SequentialInit: Σ_ss + SequentialLambda·mean(diag Σ_ss)·I.
const SequentialLambda = 1e-3

// SequentialInit refits the replaced layers of plan one at a time, in
// node order, each to the teacher's output of the layer given the input
// the partially compressed student actually feeds it (every earlier
// replaced layer already refitted), on the calibration images: the
// closed-form, per-module form of block reconstruction.
//
// For layer W (bias b) with teacher input x_t and student input x_s over
// all calibration pixels, with means μ and centred covariances C, it
// minimizes E‖W x_t + b − (M x_s + b′)‖² over M = B A + R of the layer's
// rank and residual kind and over b′:
//
//	G  = W C_ts C_ss⁻¹                  (the unconstrained least-squares fit)
//	M  = argmin ‖(G − M) C_ss^½‖_F     (svd.FactorizeData of G with C_ss)
//	b′ = b + W μ_t − M μ_s               (bias correction)
//
// since E‖W x̃_t − M x̃_s‖² = E‖W x̃_t − G x̃_s‖² + ‖(G − M) C_ss^½‖². The
// refit replaces the layer's factors and bias only where its error is
// below that of the factors already in plan (with the original bias);
// LayerInit reports both as relative errors (DataAwareErr the refit's,
// DataFreeErr the previous factors'), relative to E‖W x_t‖.
// images holds n calibration images in the teacher's input layout.
func SequentialInit(ctx context.Context, teacher *onnxpb.ModelProto, plan *convert.Plan, images []float32, n, batch, threads int, opts svd.Options) ([]LayerInit, error) {
	in, err := evaluate.ModelInput(teacher)
	if err != nil {
		return nil, fmt.Errorf("sequential init: %w", err)
	}
	size := in.Channels * in.Height * in.Width
	if n <= 0 || len(images) < n*size || batch <= 0 {
		return nil, fmt.Errorf("sequential init: %d images of %d values in a buffer of %d (batch %d)", n, size, len(images), batch)
	}
	kc := kernels.NewContext(threads)
	defer kc.Close()
	replaced := make([]bool, len(plan.Layers))
	for i, l := range plan.Layers {
		replaced[i] = l.Replace
	}
	defer func() {
		for i := range plan.Layers {
			plan.Layers[i].Replace = replaced[i]
		}
	}()
	var out []LayerInit
	for k := range plan.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l := &plan.Layers[k]
		if !replaced[k] || l.Factors == nil {
			continue
		}
		if len(l.Bias) != l.Channels {
			return nil, fmt.Errorf("sequential init of %s: bias of %d values for %d channels", l.Name, len(l.Bias), l.Channels)
		}
		// The student with every earlier replaced layer rewritten.
		for i := range plan.Layers {
			plan.Layers[i].Replace = replaced[i] && i < k
		}
		student, err := convert.Apply(teacher, plan)
		if err != nil {
			return nil, fmt.Errorf("sequential init of %s: %w", l.Name, err)
		}
		st, err := crossMoments(teacher, student, l.Input, images, n, size, in, batch, threads, kc)
		if err != nil {
			return nil, fmt.Errorf("sequential init of %s: %w", l.Name, err)
		}
		li, err := refitLayer(l, st, opts)
		if err != nil {
			return nil, fmt.Errorf("sequential init of %s: %w", l.Name, err)
		}
		out = append(out, li)
	}
	return out, nil
}

// moments are the first and second moments of one value in the teacher
// (t) and the student (s), per pixel: ss = E[x_s x_sᵀ], ts = E[x_t x_sᵀ],
// tt = E[x_t x_tᵀ] (C x C row-major), mt, ms the means.
type moments struct {
	c          int
	ss, ts, tt []float64
	mt, ms     []float64
}

// crossMoments runs both models on the images and returns the moments of
// value, which both compute.
func crossMoments(teacher, student *onnxpb.ModelProto, value string, images []float32, n, size int, in evaluate.Input, batch, threads int, kc *kernels.Context) (*moments, error) {
	mt, err := engine.NewModel(teacher, engine.Options{Threads: threads, Outputs: []string{value}})
	if err != nil {
		return nil, err
	}
	defer mt.Close()
	ms, err := engine.NewModel(student, engine.Options{Threads: threads, Outputs: []string{value}})
	if err != nil {
		return nil, err
	}
	defer ms.Close()
	var st *moments
	var ass, ats, att []float32
	pixels := 0
	for lo := 0; lo < n; lo += batch {
		b := min(batch, n-lo)
		x := images[lo*size : (lo+b)*size]
		run := func(md *engine.Model) (*engine.Tensor, error) {
			o, err := md.Run(map[string]*engine.Tensor{in.Name: engine.NewTensorF(x, b, in.Channels, in.Height, in.Width)})
			if err != nil {
				return nil, err
			}
			t := o[value]
			if t == nil || len(t.Shape) != 4 || len(t.F) == 0 {
				return nil, fmt.Errorf("value %q is not an NCHW float activation", value)
			}
			return t, nil
		}
		tt, err := run(mt)
		if err != nil {
			return nil, fmt.Errorf("teacher: %w", err)
		}
		ts, err := run(ms)
		if err != nil {
			return nil, fmt.Errorf("student: %w", err)
		}
		c, hw := tt.Shape[1], tt.Shape[2]*tt.Shape[3]
		if st == nil {
			st = &moments{c: c, ss: make([]float64, c*c), ts: make([]float64, c*c), tt: make([]float64, c*c), mt: make([]float64, c), ms: make([]float64, c)}
			ass, ats, att = make([]float32, c*c), make([]float32, c*c), make([]float32, c*c)
		}
		if len(ts.F) != len(tt.F) || tt.Shape[1] != c || len(tt.F) != b*c*hw {
			return nil, fmt.Errorf("value %q has shapes %v (teacher) and %v (student)", value, tt.Shape, ts.Shape)
		}
		clear(ass)
		clear(ats)
		clear(att)
		for i := 0; i < b; i++ {
			xt, xs := tt.F[i*c*hw:(i+1)*c*hw], ts.F[i*c*hw:(i+1)*c*hw]
			kc.Sgemm(false, true, c, c, hw, 1, xs, hw, xs, hw, 1, ass, c)
			kc.Sgemm(false, true, c, c, hw, 1, xt, hw, xs, hw, 1, ats, c)
			kc.Sgemm(false, true, c, c, hw, 1, xt, hw, xt, hw, 1, att, c)
			for ch := 0; ch < c; ch++ {
				var sumT, sumS float64
				for p := 0; p < hw; p++ {
					sumT += float64(xt[ch*hw+p])
					sumS += float64(xs[ch*hw+p])
				}
				st.mt[ch] += sumT
				st.ms[ch] += sumS
			}
		}
		for k := range ass {
			st.ss[k] += float64(ass[k])
			st.ts[k] += float64(ats[k])
			st.tt[k] += float64(att[k])
		}
		pixels += b * hw
	}
	inv := 1 / float64(pixels)
	for _, v := range [][]float64{st.ss, st.ts, st.tt, st.mt, st.ms} {
		for k := range v {
			v[k] *= inv
		}
	}
	return st, nil
}

// refitLayer computes the refit of SequentialInit for one layer from the
// moments of its input and keeps it when it beats l's current factors.
func refitLayer(l *convert.LayerPlan, st *moments, opts svd.Options) (LayerInit, error) {
	out, c := l.Channels, st.c
	if c != l.InputChannels() || len(l.W) != out*c {
		return LayerInit{}, fmt.Errorf("input of %d channels for a %dx%d weight", c, out, l.InputChannels())
	}
	// Centred covariances.
	css, cts := make([]float64, c*c), make([]float64, c*c)
	meanDiag := 0.0
	for i := 0; i < c; i++ {
		for j := 0; j < c; j++ {
			css[i*c+j] = st.ss[i*c+j] - st.ms[i]*st.ms[j]
			cts[i*c+j] = st.ts[i*c+j] - st.mt[i]*st.ms[j]
		}
		meanDiag += css[i*c+i] / float64(c)
	}
	reg := mat.NewSymDense(c, nil)
	for i := 0; i < c; i++ {
		for j := i; j < c; j++ {
			v := 0.5 * (css[i*c+j] + css[j*c+i])
			if i == j {
				v += SequentialLambda * max(meanDiag, 1e-12)
			}
			reg.SetSym(i, j, v)
		}
	}
	var ch mat.Cholesky
	if !ch.Factorize(reg) {
		return LayerInit{}, fmt.Errorf("input covariance of %d channels is not positive definite", c)
	}
	w := mat.NewDense(out, c, nil)
	for i := 0; i < out; i++ {
		for j := 0; j < c; j++ {
			w.Set(i, j, float64(l.W[i*c+j]))
		}
	}
	// Gᵀ = C_ss⁻¹ C_tsᵀ Wᵀ.
	wc := mat.NewDense(out, c, nil) // W C_ts
	wc.Mul(w, mat.NewDense(c, c, cts))
	var gt mat.Dense
	if err := ch.SolveTo(&gt, wc.T()); err != nil {
		return LayerInit{}, fmt.Errorf("solve for the least-squares fit: %w", err)
	}
	g := make([]float32, out*c)
	for i := 0; i < out; i++ {
		for j := 0; j < c; j++ {
			g[i*c+j] = float32(gt.At(j, i))
		}
	}
	f, err := svd.FactorizeData(g, out, c, l.Factors.Rank, l.Factors.Residual, css, opts)
	if err != nil {
		return LayerInit{}, err
	}
	m, err := dense(f)
	if err != nil {
		return LayerInit{}, err
	}
	old, err := dense(l.Factors)
	if err != nil {
		return LayerInit{}, err
	}
	// Errors E‖W x_t + b − M x_s − b′‖² through the moments.
	errOf := func(mm []float64, shift []float64) float64 {
		// tr(W Σ_tt Wᵀ) − 2 tr(M Σ_ts... ) written per output row:
		// e = Σ_o [ w_o Σ_tt w_oᵀ − 2 m_o Σ_st w_oᵀ + m_o Σ_ss m_oᵀ ]
		//     + ‖shift‖² + 2 shift·(W μ_t − M μ_s).
		e := 0.0
		for o := 0; o < out; o++ {
			wo, mo := l.W[o*c:(o+1)*c], mm[o*c:(o+1)*c]
			wmu, mmu := 0.0, 0.0
			for i := 0; i < c; i++ {
				var tw, sw, sm float64
				for j := 0; j < c; j++ {
					tw += st.tt[i*c+j] * float64(wo[j])
					sw += st.ts[j*c+i] * float64(wo[j]) // (Σ_st w)_i = Σ_j Σ_ts[j][i] w_j
					sm += st.ss[i*c+j] * mo[j]
				}
				e += float64(wo[i])*tw - 2*mo[i]*sw + mo[i]*sm
				wmu += float64(wo[i]) * st.mt[i]
				mmu += mo[i] * st.ms[i]
			}
			s := shift[o]
			e += s*s + 2*s*(wmu-mmu)
		}
		return max(e, 0)
	}
	ref := errOf(make([]float64, out*c), make([]float64, out))
	if ref <= 0 {
		return LayerInit{}, fmt.Errorf("the layer's output is zero on the calibration images")
	}
	// b′ − b = W μ_t − M μ_s, so that the shift term removes the mean error.
	shift := make([]float64, out)
	for o := 0; o < out; o++ {
		v := 0.0
		for i := 0; i < c; i++ {
			v += float64(l.W[o*c+i])*st.mt[i] - m[o*c+i]*st.ms[i]
		}
		shift[o] = -v
	}
	newErr := errOf(m, shift)
	oldErr := errOf(old, make([]float64, out))
	li := LayerInit{Name: l.Name, Channels: out, Rank: f.Rank, DataFreeErr: sqrtRatio(oldErr, ref), DataAwareErr: sqrtRatio(newErr, ref), Kept: "weights"}
	if newErr < oldErr {
		l.Factors = f
		b := make([]float32, out)
		for o := range b {
			b[o] = l.Bias[o] - float32(shift[o])
		}
		l.Bias = b
		li.Kept = "data"
	}
	return li, nil
}

// dense returns B A + R of f as a row-major Out x In float64 matrix (a
// depthwise residual through its centre taps, Diag).
func dense(f *svd.Factors) ([]float64, error) {
	out, in, r := f.Out, f.In, f.Rank
	if len(f.A) != r*in || len(f.B) != out*r {
		return nil, fmt.Errorf("factors of rank %d have %d and %d values, want %d and %d", r, len(f.A), len(f.B), r*in, out*r)
	}
	m := make([]float64, out*in)
	for o := 0; o < out; o++ {
		for k := 0; k < r; k++ {
			b := float64(f.B[o*r+k])
			for i := 0; i < in; i++ {
				m[o*in+i] += b * float64(f.A[k*in+i])
			}
		}
	}
	switch f.Residual.Type {
	case svd.None:
	case svd.Identity:
		for o := 0; o < min(out, in); o++ {
			m[o*in+o]++
		}
	case svd.Diag, svd.Depthwise:
		if len(f.Diag) != out || out != in {
			return nil, fmt.Errorf("residual %v with %d values for a %dx%d weight", f.Residual, len(f.Diag), out, in)
		}
		for o, d := range f.Diag {
			m[o*in+o] += float64(d)
		}
	}
	return m, nil
}

// sqrtRatio returns sqrt(a/b).
func sqrtRatio(a, b float64) float64 { return math.Sqrt(a / b) }
