package finetune

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/engine/kernels"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// SequentialLambda regularizes the least-squares fit of SequentialInit
// towards the layer's own weight: the ridge term is
// SequentialLambda·mean(diag C_ss)·‖G − W‖².
const SequentialLambda = 1e-2

// SequentialInit refits the replaced layers of plan one at a time, in
// node order, each to the teacher's output of the layer given the input
// the partially compressed student actually feeds it (every earlier
// replaced layer already refitted), on the calibration images: the
// closed-form, per-module form of block reconstruction.
//
// For layer W (bias b) with teacher input x_t and student input x_s over
// the calibration pixels, with means μ and centred covariances C, it
// minimizes E‖W x_t + b − (M x_s + b′)‖² over M = B A + R of the layer's
// rank and residual kind and over b′:
//
//	G  = (W C_ts + λW)(C_ss + λI)⁻¹     (least squares, ridge towards W)
//	M  = argmin ‖(G − M) C_ss^½‖_F     (svd.FactorizeData of G with C_ss)
//	b′ = b + W μ_t − M μ_s               (bias correction)
//
// since E‖W x̃_t − M x̃_s‖² = E‖W x̃_t − G x̃_s‖² + ‖(G − M) C_ss^½‖² at
// λ = 0 (λ = SequentialLambda·mean(diag C_ss)). G has C² free entries, so
// with few calibration pixels per channel it can fit noise: the refit is
// first computed on the even-numbered images and checked on the odd ones,
// and the layer is refitted on all of them only where that lowers the
// held-out error below that of the factors already in plan (with the
// original bias). LayerInit reports both held-out errors, relative to
// E‖W x_t‖ (DataAwareErr the refit's, DataFreeErr the previous
// factors'). images holds n >= 2 calibration images in the teacher's
// input layout.
func SequentialInit(ctx context.Context, teacher *onnxpb.ModelProto, plan *convert.Plan, images []float32, n, batch, threads int, opts svd.Options) ([]LayerInit, error) {
	in, err := evaluate.ModelInput(teacher)
	if err != nil {
		return nil, fmt.Errorf("sequential init: %w", err)
	}
	size := in.Channels * in.Height * in.Width
	if n < 2 || len(images) < n*size || batch <= 0 {
		return nil, fmt.Errorf("sequential init: %d images of %d values in a buffer of %d (batch %d); want at least 2", n, size, len(images), batch)
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
		halves, err := crossMoments(teacher, student, l.Input, images, n, size, in, batch, threads, kc)
		if err != nil {
			return nil, fmt.Errorf("sequential init of %s: %w", l.Name, err)
		}
		li, err := refitChecked(l, halves, opts)
		if err != nil {
			return nil, fmt.Errorf("sequential init of %s: %w", l.Name, err)
		}
		out = append(out, li)
	}
	return out, nil
}

// refitChecked fits l on halves[0], compares the error of the fit with
// that of l's factors on halves[1], and where the fit is better refits l
// on both halves.
func refitChecked(l *convert.LayerPlan, halves [2]*moments, opts svd.Options) (LayerInit, error) {
	fa, ba, err := fitLayer(l, halves[0].normalized(), opts)
	if err != nil {
		return LayerInit{}, err
	}
	check := halves[1].normalized()
	eNew, err := layerError(l, fa, ba, check)
	if err != nil {
		return LayerInit{}, err
	}
	eOld, err := layerError(l, l.Factors, l.Bias, check)
	if err != nil {
		return LayerInit{}, err
	}
	li := LayerInit{Name: l.Name, Channels: l.Channels, Rank: l.Factors.Rank, DataFreeErr: math.Sqrt(eOld), DataAwareErr: math.Sqrt(eNew), Kept: "weights"}
	if eNew >= eOld {
		return li, nil
	}
	all := halves[0].plus(halves[1]).normalized()
	f, b, err := fitLayer(l, all, opts)
	if err != nil {
		return LayerInit{}, err
	}
	l.Factors, l.Bias, li.Kept = f, b, "data"
	return li, nil
}

// SequentialInitFrom reads the first n images of src (batches of batch)
// into memory and runs SequentialInit on them.
func SequentialInitFrom(ctx context.Context, teacher *onnxpb.ModelProto, plan *convert.Plan, src dataset.Batches, n, batch, threads int, opts svd.Options) ([]LayerInit, error) {
	in, err := evaluate.ModelInput(teacher)
	if err != nil {
		return nil, fmt.Errorf("sequential init: %w", err)
	}
	if n <= 0 || batch <= 0 {
		return nil, fmt.Errorf("sequential init: %d images in batches of %d", n, batch)
	}
	size := in.Channels * in.Height * in.Width
	x := make([]float32, (n+batch)*size)
	labels := make([]int, batch)
	got := 0
	for got < n {
		k, err := src.Next(x[got*size:(got+batch)*size], labels)
		if errors.Is(err, io.EOF) || (err == nil && k == 0) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("sequential init: %w", err)
		}
		got += k
	}
	if got == 0 {
		return nil, errors.New("sequential init: the data holds no samples")
	}
	return SequentialInit(ctx, teacher, plan, x, min(got, n), batch, threads, opts)
}

// moments are the sums of one value's first and second moments in the
// teacher (t) and the student (s) over pixels calibration pixels: ss =
// Σ x_s x_sᵀ, ts = Σ x_t x_sᵀ, tt = Σ x_t x_tᵀ (C x C row-major), mt, ms
// the sums of the values; normalized divides them by pixels.
type moments struct {
	c          int
	pixels     float64
	ss, ts, tt []float64
	mt, ms     []float64
}

func newMoments(c int) *moments {
	return &moments{c: c, ss: make([]float64, c*c), ts: make([]float64, c*c), tt: make([]float64, c*c), mt: make([]float64, c), ms: make([]float64, c)}
}

// parts lists the sums, in one order for every moments.
func (m *moments) parts() [][]float64 { return [][]float64{m.ss, m.ts, m.tt, m.mt, m.ms} }

// plus returns the sums of m and o.
func (m *moments) plus(o *moments) *moments {
	r := newMoments(m.c)
	r.pixels = m.pixels + o.pixels
	op := o.parts()
	for k, v := range r.parts() {
		for i := range v {
			v[i] = m.parts()[k][i] + op[k][i]
		}
	}
	return r
}

// normalized returns the moments per pixel (expectations).
func (m *moments) normalized() *moments {
	r := m.plus(newMoments(m.c))
	inv := 1 / max(m.pixels, 1)
	for _, v := range r.parts() {
		for i := range v {
			v[i] *= inv
		}
	}
	r.pixels = 1
	return r
}

// crossMoments runs both models on the images and returns the moment
// sums of value, which both compute, over the even-numbered and the
// odd-numbered images.
func crossMoments(teacher, student *onnxpb.ModelProto, value string, images []float32, n, size int, in evaluate.Input, batch, threads int, kc *kernels.Context) ([2]*moments, error) {
	var halves [2]*moments
	mt, err := engine.NewModel(teacher, engine.Options{Threads: threads, Outputs: []string{value}})
	if err != nil {
		return halves, err
	}
	defer mt.Close()
	ms, err := engine.NewModel(student, engine.Options{Threads: threads, Outputs: []string{value}})
	if err != nil {
		return halves, err
	}
	defer ms.Close()
	var acc [2][3][]float32
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
			return halves, fmt.Errorf("teacher: %w", err)
		}
		ts, err := run(ms)
		if err != nil {
			return halves, fmt.Errorf("student: %w", err)
		}
		c, hw := tt.Shape[1], tt.Shape[2]*tt.Shape[3]
		if halves[0] == nil {
			for h := range halves {
				halves[h] = newMoments(c)
				for k := range acc[h] {
					acc[h][k] = make([]float32, c*c)
				}
			}
		}
		if len(ts.F) != len(tt.F) || c != halves[0].c || len(tt.F) != b*c*hw {
			return halves, fmt.Errorf("value %q has shapes %v (teacher) and %v (student)", value, tt.Shape, ts.Shape)
		}
		for h := range acc {
			for _, a := range acc[h] {
				clear(a)
			}
		}
		for i := 0; i < b; i++ {
			h := (lo + i) % 2
			st, a := halves[h], acc[h]
			xt, xs := tt.F[i*c*hw:(i+1)*c*hw], ts.F[i*c*hw:(i+1)*c*hw]
			kc.Sgemm(false, true, c, c, hw, 1, xs, hw, xs, hw, 1, a[0], c)
			kc.Sgemm(false, true, c, c, hw, 1, xt, hw, xs, hw, 1, a[1], c)
			kc.Sgemm(false, true, c, c, hw, 1, xt, hw, xt, hw, 1, a[2], c)
			for ch := 0; ch < c; ch++ {
				var sumT, sumS float64
				for p := 0; p < hw; p++ {
					sumT += float64(xt[ch*hw+p])
					sumS += float64(xs[ch*hw+p])
				}
				st.mt[ch] += sumT
				st.ms[ch] += sumS
			}
			st.pixels += float64(hw)
		}
		// Per batch in float32, across batches in float64.
		for h, st := range halves {
			for k, v := range [][]float64{st.ss, st.ts, st.tt} {
				for i, a := range acc[h][k] {
					v[i] += float64(a)
				}
			}
		}
	}
	return halves, nil
}

// fitLayer returns the factors and bias of SequentialInit's refit of l
// from the per-pixel moments st of its input.
func fitLayer(l *convert.LayerPlan, st *moments, opts svd.Options) (*svd.Factors, []float32, error) {
	out, c := l.Channels, st.c
	if c != l.InputChannels() || len(l.W) != out*c || len(l.Bias) != out {
		return nil, nil, fmt.Errorf("input of %d channels for a %dx%d weight and %d biases", c, out, l.InputChannels(), len(l.Bias))
	}
	// Centred covariances.
	css, cts := make([]float64, c*c), make([]float64, c*c)
	meanDiag := 0.0
	for i := 0; i < c; i++ {
		for j := 0; j < c; j++ {
			css[i*c+j] = 0.5*(st.ss[i*c+j]+st.ss[j*c+i]) - st.ms[i]*st.ms[j]
			cts[i*c+j] = st.ts[i*c+j] - st.mt[i]*st.ms[j]
		}
		// A constant channel's variance may round below zero.
		css[i*c+i] = max(css[i*c+i], 0)
		meanDiag += css[i*c+i] / float64(c)
	}
	lambda := SequentialLambda * max(meanDiag, 1e-12)
	reg := mat.NewSymDense(c, nil)
	for i := 0; i < c; i++ {
		for j := i; j < c; j++ {
			v := css[i*c+j]
			if i == j {
				v += lambda
			}
			reg.SetSym(i, j, v)
		}
	}
	var ch mat.Cholesky
	if !ch.Factorize(reg) {
		return nil, nil, fmt.Errorf("input covariance of %d channels is not positive definite", c)
	}
	w := mat.NewDense(out, c, nil)
	for i := 0; i < out; i++ {
		for j := 0; j < c; j++ {
			w.Set(i, j, float64(l.W[i*c+j]))
		}
	}
	// Gᵀ = (C_ss + λI)⁻¹ (W C_ts + λW)ᵀ.
	wc := mat.NewDense(out, c, nil)
	wc.Mul(w, mat.NewDense(c, c, cts))
	wc.Add(wc, scaled(lambda, w))
	var gt mat.Dense
	if err := ch.SolveTo(&gt, wc.T()); err != nil {
		return nil, nil, fmt.Errorf("solve for the least-squares fit: %w", err)
	}
	g := make([]float32, out*c)
	for i := 0; i < out; i++ {
		for j := 0; j < c; j++ {
			g[i*c+j] = float32(gt.At(j, i))
		}
	}
	f, err := svd.FactorizeData(g, out, c, l.Factors.Rank, l.Factors.Residual, css, opts)
	if err != nil {
		return nil, nil, err
	}
	m, err := dense(f)
	if err != nil {
		return nil, nil, err
	}
	// b′ = b + W μ_t − M μ_s.
	bias := make([]float32, out)
	for o := 0; o < out; o++ {
		v := float64(l.Bias[o])
		for i := 0; i < c; i++ {
			v += float64(l.W[o*c+i])*st.mt[i] - m[o*c+i]*st.ms[i]
		}
		bias[o] = float32(v)
	}
	return f, bias, nil
}

// scaled returns a·m.
func scaled(a float64, m *mat.Dense) *mat.Dense {
	var r mat.Dense
	r.Scale(a, m)
	return &r
}

// layerError returns E‖W x_t + b − (M x_s + b2)‖² / E‖W x_t‖² of factors
// f (M = B A + R) and bias b2 under the per-pixel moments st.
func layerError(l *convert.LayerPlan, f *svd.Factors, b2 []float32, st *moments) (float64, error) {
	out, c := l.Channels, st.c
	if len(b2) != out || len(l.Bias) != out || len(l.W) != out*c {
		return 0, fmt.Errorf("%d and %d biases, %d weights for %d x %d", len(b2), len(l.Bias), len(l.W), out, c)
	}
	m, err := dense(f)
	if err != nil {
		return 0, err
	}
	// Per output row o with s = b − b2:
	// w Σ_tt wᵀ − 2 m Σ_st wᵀ + m Σ_ss mᵀ + s² + 2 s (w μ_t − m μ_s).
	e, ref := 0.0, 0.0
	for o := 0; o < out; o++ {
		wo, mo := l.W[o*c:(o+1)*c], m[o*c:(o+1)*c]
		wmu, mmu := 0.0, 0.0
		for i := 0; i < c; i++ {
			var tw, sw, sm float64
			for j := 0; j < c; j++ {
				tw += st.tt[i*c+j] * float64(wo[j])
				sw += st.ts[j*c+i] * float64(wo[j])
				sm += st.ss[i*c+j] * mo[j]
			}
			e += float64(wo[i])*tw - 2*mo[i]*sw + mo[i]*sm
			ref += float64(wo[i]) * tw
			wmu += float64(wo[i]) * st.mt[i]
			mmu += mo[i] * st.ms[i]
		}
		s := float64(l.Bias[o]) - float64(b2[o])
		e += s*s + 2*s*(wmu-mmu)
	}
	if ref <= 0 {
		return 0, fmt.Errorf("the layer's output is zero on the calibration images")
	}
	return max(e, 0) / ref, nil
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
