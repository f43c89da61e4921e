package rankalloc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// Metric names how a sensitivity was measured.
const (
	// MetricKL is the mean KL divergence KL(p_original ‖ p_compressed) of
	// the softmax of the model's outputs over the calibration images.
	MetricKL = "kl"
	// MetricWeights is the squared relative weight reconstruction error
	// ‖W − (B A + R)‖²_F / ‖W‖²_F (no images given).
	MetricWeights = "weights"
	// MetricRandom is the squared relative error of the model's outputs
	// on Options.Random standard-normal random inputs x_n (no images
	// given):
	//
	//	Σ_n ‖f̂(x_n) − f(x_n)‖² / Σ_n ‖f(x_n)‖²
	//
	// with f the original and f̂ the model with one layer replaced. It
	// measures what a layer does to the whole model's outputs, which the
	// weight error cannot (a layer whose output the rest of the model
	// amplifies counts for more), but only on inputs unlike real images:
	// a proxy for fidelity where no images are at hand.
	MetricRandom = "random"
)

// Defaults for Options.
const (
	DefaultSamples = 256
	DefaultBatch   = 32
	// DefaultRandom is a good Options.Random: enough standard-normal
	// inputs for the output error of each (layer, rank) to settle to a
	// few percent, few enough to keep an ImageNet-sized model's
	// measurement to seconds.
	DefaultRandom = 16
)

// Sensitivity is the loss of one layer replaced alone, measured at a few
// ranks.
type Sensitivity struct {
	Name    string `json:"name"`
	Out, In int
	// Ranks are the measured ranks in increasing order and Loss the loss
	// at each (see Metric).
	Ranks []int     `json:"ranks"`
	Loss  []float64 `json:"loss"`
}

// At returns the loss at rank r: the measured value at a measured rank,
// linear interpolation between measured ranks, and between the largest
// measured rank and zero loss at full rank min(Out, In). Ranks below the
// smallest measured one get its loss.
func (s Sensitivity) At(r int) float64 {
	if len(s.Ranks) == 0 {
		return 0
	}
	full := min(s.Out, s.In)
	if r >= full {
		return 0
	}
	if r <= s.Ranks[0] {
		return s.Loss[0]
	}
	for i := 1; i < len(s.Ranks); i++ {
		if r <= s.Ranks[i] {
			r0, r1 := s.Ranks[i-1], s.Ranks[i]
			t := float64(r-r0) / float64(r1-r0)
			return s.Loss[i-1] + t*(s.Loss[i]-s.Loss[i-1])
		}
	}
	last := len(s.Ranks) - 1
	r0 := s.Ranks[last]
	if r0 >= full {
		return 0
	}
	t := float64(r-r0) / float64(full-r0)
	return (1 - t) * s.Loss[last]
}

// Options configure Measure, Allocate and Run.
type Options struct {
	// Multiple: the ranks offered are multiples of it (when > 1).
	Multiple int
	// Residual is the residual kind of the LPR modules.
	Residual svd.ResidualKind
	// Plan sets the input shapes for MAC accounting, the candidates
	// (e.g. non-square ones), the factorization options and workers.
	// Plan.Select holds the user's constraints: excluded layers are kept,
	// layers with a per-layer rank keep it, and Force also offers ranks
	// whose module is not smaller than the layer.
	Plan convert.PlanOptions
	// Data, when not nil, yields calibration images (NCHW float32 in the
	// model's input shape) in batches of at most Batch images:
	// sensitivities are then measured as MetricKL on the first Samples of
	// them; otherwise as MetricRandom when Random > 0, else as
	// MetricWeights.
	Data dataset.Batches
	// Random is the number of standard-normal random inputs (seeded by
	// RandomSeed) on which sensitivities are measured as MetricRandom
	// when Data is nil; 0 measures MetricWeights.
	Random     int
	RandomSeed uint64
	// Samples is the number of calibration images (default 256), rounded
	// down to a multiple of the batch size.
	Samples int
	// Batch is the number of images run at once (default 32; a model with
	// a fixed batch size uses its own).
	Batch int
	// Threads is the number of engine threads (0: all CPUs).
	Threads int
	// Fractions are the ranks measured per layer as fractions of
	// min(C_out, C_in), each moved to the nearest rank on offer (default
	// 1/16, 1/8, 1/4, 1/2); the smallest rank on offer is always measured,
	// and layers with at most MaxExact ranks on offer are measured at all.
	Fractions []float64
	// MaxExact (default 4) is the number of offered ranks up to which
	// every one is measured.
	MaxExact int
	// Progress, when set, is called after each measurement.
	Progress func(done, total int)
	// Latency holds the measured costs a Latency budget needs.
	Latency *LatencyTable
}

func (o Options) withDefaults() Options {
	if o.Samples <= 0 {
		o.Samples = DefaultSamples
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if len(o.Fractions) == 0 {
		o.Fractions = []float64{1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0 / 2}
	}
	if o.MaxExact <= 0 {
		o.MaxExact = 4
	}
	return o
}

// Metric returns the metric Measure uses with these options.
func (o Options) Metric() string {
	switch {
	case o.Data != nil:
		return MetricKL
	case o.Random > 0:
		return MetricRandom
	}
	return MetricWeights
}

// fixedRank reports whether the user's selection fixes layer l: kept
// (rank 0) by an exclude pattern or set by a per-layer rank.
func (o Options) fixedRank(name string) (int, bool) {
	if o.Plan.Select.Excludes(name) {
		return 0, true
	}
	if r, ok := o.Plan.Select.Ranks[name]; ok {
		return r.Rank, true
	}
	return 0, false
}

// offeredRanks lists the ranks the allocator may give layer l, in
// increasing order: multiples of Multiple up to min(C_out, C_in) whose
// module has fewer parameters than the layer (any with Plan.Select.Force); none
// when Plan.ChannelAlign makes convert.NewPlan keep the layer.
func (o Options) offeredRanks(l *convert.LayerPlan) []int {
	out, in := l.Channels, l.InputChannels()
	if a := o.Plan.ChannelAlign; a > 1 && (out%a != 0 || in%a != 0) {
		return nil
	}
	step := max(1, o.Multiple)
	res := l.Residual.Params(out)
	var rs []int
	for r := step; r <= min(out, in); r += step {
		if o.Plan.Select.Force || r*(in+out)+res < out*in {
			rs = append(rs, r)
		}
	}
	return rs
}

// measuredRanks picks the ranks to measure among the offered ones.
func (o Options) measuredRanks(offered []int, c int) []int {
	if len(offered) <= o.MaxExact {
		return offered
	}
	set := map[int]bool{offered[0]: true}
	for _, f := range o.Fractions {
		want := f * float64(c)
		best := offered[0]
		for _, r := range offered {
			if math.Abs(float64(r)-want) < math.Abs(float64(best)-want) {
				best = r
			}
		}
		set[best] = true
	}
	var rs []int
	for r := range set {
		rs = append(rs, r)
	}
	sort.Ints(rs)
	return rs
}

// BasePlan lists every candidate of m with its folded weights and
// residual, none of them replaced (no rank rule and no selection): the
// plan that Measure and Allocate take.
func BasePlan(ctx context.Context, m *onnxpb.ModelProto, o Options) (*convert.Plan, error) {
	po := o.Plan
	po.Select = convert.Selection{}
	return convert.NewPlan(ctx, m, svd.Policy{}, o.Residual, po)
}

// Measure returns the sensitivity of every layer of base (a plan of m,
// see Run) that the allocator may choose a rank for, in plan order.
// Layers fixed by opts.Plan.Select or with no rank on offer are left out.
func Measure(ctx context.Context, m *onnxpb.ModelProto, base *convert.Plan, opts Options) ([]Sensitivity, error) {
	opts = opts.withDefaults()
	var sens []Sensitivity
	var layers []*convert.LayerPlan
	var jobs []svd.Job
	var jobOf [][2]int // (sensitivity index, rank index)
	for i := range base.Layers {
		l := &base.Layers[i]
		if _, fixed := opts.fixedRank(l.Name); fixed {
			continue
		}
		offered := opts.offeredRanks(l)
		if len(offered) == 0 {
			continue
		}
		s := Sensitivity{Name: l.Name, Out: l.Channels, In: l.InputChannels(), Ranks: opts.measuredRanks(offered, min(l.Channels, l.InputChannels()))}
		s.Loss = make([]float64, len(s.Ranks))
		for k, r := range s.Ranks {
			jobs = append(jobs, svd.Job{Name: l.Name, W: l.W, Out: s.Out, In: s.In, Rank: r, Kind: l.Residual})
			jobOf = append(jobOf, [2]int{len(sens), k})
		}
		sens = append(sens, s)
		layers = append(layers, l)
	}
	if len(jobs) == 0 {
		return sens, nil
	}
	fs, err := svd.FactorizeAll(ctx, jobs, opts.Plan.SVD, opts.Plan.Workers)
	if err != nil {
		return nil, fmt.Errorf("sensitivity: %w", err)
	}
	if opts.Metric() == MetricWeights {
		for j, f := range fs {
			sens[jobOf[j][0]].Loss[jobOf[j][1]] = f.RelErr * f.RelErr
			if opts.Progress != nil {
				opts.Progress(j+1, len(fs))
			}
		}
		return sens, nil
	}
	r, err := newRunner(m, base, layers, opts)
	if err != nil {
		return nil, err
	}
	defer r.close()
	for j, f := range fs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		si, k := jobOf[j][0], jobOf[j][1]
		loss, err := r.loss(layers[si], f)
		if err != nil {
			return nil, fmt.Errorf("sensitivity of %s at rank %d: %w", layers[si].Name, f.Rank, err)
		}
		sens[si].Loss[k] = loss
		if opts.Progress != nil {
			opts.Progress(j+1, len(fs))
		}
	}
	return sens, nil
}

// runner runs m on the calibration images (or random inputs) with one
// layer's weight set to a low-rank reconstruction and measures the
// difference to the original's outputs (MetricKL or MetricRandom).
type runner struct {
	m       *onnxpb.ModelProto
	base    *convert.Plan
	opts    Options
	metric  string
	in      evaluate.Input
	batch   int
	x       []float32 // n images
	n       int
	refLogP []float64 // MetricKL: log-softmax of the original's outputs
	classes int
	// MetricRandom: the original's outputs and their squared norm.
	ref     []float32
	refNorm float64
	prog    *engine.Program
	// direct maps a layer name to how its weight is substituted in prog;
	// layers not in it are measured on a rewritten model.
	direct map[string]*substitute
}

// substitute is how a layer's dense reconstruction W_r (BN-folded) is
// written into the original Conv's weight: W_conv[o,:] = W_r[o,:] / s[o]
// with s the scale of a folded BatchNormalization (1 without one).
type substitute struct {
	weight string
	orig   []float32
	scale  []float64
}

func newRunner(m *onnxpb.ModelProto, base *convert.Plan, layers []*convert.LayerPlan, opts Options) (*runner, error) {
	in, err := evaluate.ModelInput(m)
	if err != nil {
		return nil, fmt.Errorf("sensitivity: %w", err)
	}
	r := &runner{m: m, base: base, opts: opts, metric: opts.Metric(), in: in, direct: map[string]*substitute{}}
	r.batch = opts.Batch
	if in.Batch > 0 {
		r.batch = in.Batch
	}
	if err := r.readImages(); err != nil {
		return nil, err
	}
	var trainable []string
	subs := map[string]*substitute{}
	for _, l := range layers {
		if s, ok := substitutable(m, l); ok {
			subs[l.Name] = s
			trainable = append(trainable, s.weight)
		}
	}
	r.prog, err = engine.Compile(m, engine.Options{Threads: opts.Threads, Trainable: trainable,
		InputShapes: map[string][]int{in.Name: {r.batch, in.Channels, in.Height, in.Width}}})
	if err != nil {
		return nil, fmt.Errorf("sensitivity: compile: %w", err)
	}
	for name, s := range subs {
		p := r.prog.Param(s.weight)
		if p == nil || len(p.F) != len(s.orig) {
			continue
		}
		r.direct[name] = s
	}
	logits, err := r.forward(r.prog)
	if err != nil {
		r.close()
		return nil, err
	}
	r.classes = len(logits) / r.n
	if r.metric == MetricRandom {
		r.ref = logits
		for _, v := range logits {
			r.refNorm += float64(v) * float64(v)
		}
		if !(r.refNorm > 0) || math.IsInf(r.refNorm, 0) {
			r.close()
			return nil, fmt.Errorf("sensitivity: the original's outputs on %d random inputs have norm %g; cannot measure relative errors", r.n, math.Sqrt(r.refNorm))
		}
		if s := spread(logits, r.classes); s < MinRandomSpread {
			r.close()
			return nil, &ConstantOutputsError{Inputs: r.n, Spread: s}
		}
		return r, nil
	}
	r.refLogP = logSoftmax(logits, r.classes)
	return r, nil
}

func (r *runner) close() {
	if r.prog != nil {
		r.prog.Close()
	}
}

// readImages reads up to Samples images (Random random inputs for
// MetricRandom), a whole number of batches.
func (r *runner) readImages() error {
	size := r.in.Channels * r.in.Height * r.in.Width
	want, data := r.opts.Samples, r.opts.Data
	if r.metric == MetricRandom {
		want = r.opts.Random
		if r.in.Batch <= 0 {
			r.batch = min(r.batch, want)
		}
		noise, err := dataset.Noise{Count: want, Size: size, Seed: r.opts.RandomSeed}.Open(r.batch)
		if err != nil {
			return fmt.Errorf("sensitivity: %w", err)
		}
		defer noise.Close()
		data = noise
	}
	buf := make([]float32, r.batch*size)
	labels := make([]int, r.batch)
	for r.n < want {
		k, err := data.Next(buf, labels)
		if k > 0 {
			k = min(k, want-r.n)
			r.x = append(r.x, buf[:k*size]...)
			r.n += k
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("sensitivity: calibration images: %w", err)
		}
	}
	if r.n < r.batch {
		if r.in.Batch > 0 || r.n == 0 {
			return fmt.Errorf("sensitivity: %d calibration images are fewer than one batch of %d", r.n, r.batch)
		}
		r.batch = r.n
	}
	r.n -= r.n % r.batch
	r.x = r.x[:r.n*size]
	return nil
}

// forward runs prog over the images and returns all outputs.
func (r *runner) forward(prog *engine.Program) ([]float32, error) {
	size := r.in.Channels * r.in.Height * r.in.Width
	var all []float32
	for i := 0; i < r.n; i += r.batch {
		x := engine.NewTensorF(r.x[i*size:(i+r.batch)*size], r.batch, r.in.Channels, r.in.Height, r.in.Width)
		out, err := prog.Run(map[string]*engine.Tensor{r.in.Name: x})
		if err != nil {
			return nil, fmt.Errorf("run: %w", err)
		}
		y, ok := out[r.in.Output]
		if !ok {
			return nil, fmt.Errorf("run: no output %q", r.in.Output)
		}
		all = append(all, y.F...)
	}
	if len(all)%r.n != 0 || len(all) == 0 {
		return nil, fmt.Errorf("output %q has %d values for %d images", r.in.Output, len(all), r.n)
	}
	return all, nil
}

// loss measures layer l replaced by factors f.
func (r *runner) loss(l *convert.LayerPlan, f *svd.Factors) (float64, error) {
	var logits []float32
	if s := r.direct[l.Name]; s != nil {
		p := r.prog.Param(s.weight)
		w := dense(f)
		for o := 0; o < f.Out; o++ {
			for i := 0; i < f.In; i++ {
				p.F[o*f.In+i] = float32(float64(w[o*f.In+i]) / s.scale[o])
			}
		}
		var err error
		logits, err = r.forward(r.prog)
		copy(p.F, s.orig)
		if err != nil {
			return 0, err
		}
	} else {
		plan := *r.base
		plan.Layers = append([]convert.LayerPlan(nil), r.base.Layers...)
		for i := range plan.Layers {
			if plan.Layers[i].Name == l.Name && plan.Layers[i].Node == l.Node {
				plan.Layers[i].Replace, plan.Layers[i].Rank, plan.Layers[i].Factors = true, f.Rank, f
			}
		}
		out, err := convert.Apply(r.m, &plan)
		if err != nil {
			return 0, err
		}
		prog, err := engine.Compile(out, engine.Options{Threads: r.opts.Threads,
			InputShapes: map[string][]int{r.in.Name: {r.batch, r.in.Channels, r.in.Height, r.in.Width}}})
		if err != nil {
			return 0, fmt.Errorf("compile: %w", err)
		}
		logits, err = r.forward(prog)
		prog.Close()
		if err != nil {
			return 0, err
		}
	}
	if r.metric == MetricRandom {
		if len(logits) != len(r.ref) {
			return 0, fmt.Errorf("%d outputs, the original gave %d", len(logits), len(r.ref))
		}
		var d float64
		for i, v := range logits {
			e := float64(v) - float64(r.ref[i])
			d += e * e
		}
		return d / r.refNorm, nil
	}
	if len(logits) != len(r.refLogP) {
		return 0, fmt.Errorf("%d outputs, the original gave %d", len(logits), len(r.refLogP))
	}
	logP := logSoftmax(logits, r.classes)
	var kl float64
	for i, lr := range r.refLogP {
		kl += math.Exp(lr) * (lr - logP[i])
	}
	return math.Max(0, kl/float64(r.n)), nil
}

// dense returns the out x in matrix B A + R of factors f (a depthwise
// residual counts through its centre taps, the only non-zero ones at
// initialization).
func dense(f *svd.Factors) []float32 {
	w := make([]float32, f.Out*f.In)
	for o := 0; o < f.Out; o++ {
		row := w[o*f.In : (o+1)*f.In]
		for k := 0; k < f.Rank; k++ {
			b := f.B[o*f.Rank+k]
			if b == 0 {
				continue
			}
			a := f.A[k*f.In : (k+1)*f.In]
			for i := range row {
				row[i] += b * a[i]
			}
		}
		if o < f.In {
			switch f.Residual.Type {
			case svd.Identity:
				row[o]++
			case svd.Diag, svd.Depthwise:
				row[o] += f.Diag[o]
			}
		}
	}
	return w
}

// substitutable returns how layer l's weight can be overwritten in the
// compiled original: its weight must be a graph initializer read by no
// other node input, and a BatchNormalization after it must have constant
// scale and variance with no zero scale.
func substitutable(m *onnxpb.ModelProto, l *convert.LayerPlan) (*substitute, bool) {
	g := m.GetGraph()
	uses := 0
	for _, n := range g.GetNode() {
		for _, in := range n.GetInput() {
			if in == l.Weight {
				uses++
			}
		}
	}
	if uses != 1 {
		return nil, false
	}
	var w *onnxpb.TensorProto
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = t
	}
	w = inits[l.Weight]
	if w == nil {
		return nil, false
	}
	orig, err := onnxio.Float32s(w)
	out, in := l.Channels, l.InputChannels()
	if err != nil || len(orig) != out*in {
		return nil, false
	}
	s := &substitute{weight: l.Weight, orig: orig, scale: make([]float64, out)}
	for o := range s.scale {
		s.scale[o] = 1
	}
	if l.BatchNorm >= 0 {
		bn := g.GetNode()[l.BatchNorm]
		if len(bn.GetInput()) < 5 {
			return nil, false
		}
		gamma, err1 := floatsOf(inits, bn.GetInput()[1])
		variance, err2 := floatsOf(inits, bn.GetInput()[4])
		if err1 != nil || err2 != nil || len(gamma) != out || len(variance) != out {
			return nil, false
		}
		eps := 1e-5
		for _, a := range bn.GetAttribute() {
			if a.GetName() == "epsilon" {
				eps = float64(a.GetF())
			}
		}
		for o := range s.scale {
			s.scale[o] = float64(gamma[o]) / math.Sqrt(float64(variance[o])+eps)
			if s.scale[o] == 0 || math.IsNaN(s.scale[o]) || math.IsInf(s.scale[o], 0) {
				return nil, false
			}
		}
	}
	return s, true
}

func floatsOf(inits map[string]*onnxpb.TensorProto, name string) ([]float32, error) {
	t := inits[name]
	if t == nil {
		return nil, fmt.Errorf("%q is not an initializer", name)
	}
	return onnxio.Float32s(t)
}

// logSoftmax returns the row-wise log-softmax of rows of the given width.
func logSoftmax(x []float32, width int) []float64 {
	out := make([]float64, len(x))
	for i := 0; i+width <= len(x); i += width {
		row := x[i : i+width]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v) - mx)
		}
		lse := mx + math.Log(sum)
		for j, v := range row {
			out[i+j] = float64(v) - lse
		}
	}
	return out
}
