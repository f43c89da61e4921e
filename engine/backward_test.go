package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Gradient checks: every backward pass is compared with central finite
// differences of the scalar loss L = Σ_outputs Σ out·R (R random, fixed),
// evaluated by the engine's own float32 forward pass and summed in
// float64. Only the outputs that a perturbation changes differ between the
// two evaluations, so with eps = 1e-3 the difference quotient is accurate
// to about 1e-4 relative; inputs of kinked functions (Relu, Clip, MaxPool,
// ...) are drawn at least 0.05 away from their kinks.

const (
	fdEps = 1e-3
	// fdTol bounds ‖grad − fd‖₂ / ‖fd‖₂ per tensor, and every element's
	// |grad − fd| relative to the tensor's largest |fd|.
	fdTol = 2e-3
	// fdTolGraph is fdTol for the small networks, whose loss sums many
	// rounded terms (their worst error is about 2e-3 on the tiny input
	// gradients behind a BatchNormalization).
	fdTolGraph = 5e-3
	// fdEpsPiecewise is the second step tried on piecewise linear losses.
	fdEpsPiecewise = 1e-2
)

// bwGen fills an input of the given size.
type bwGen func(rng *rand.Rand, n int) []float32

func genNormal(rng *rand.Rand, n int) []float32 {
	f := make([]float32, n)
	for i := range f {
		f[i] = float32(rng.NormFloat64())
	}
	return f
}

// genAwayFrom draws normal values (scaled) that keep at least 0.05 away
// from each kink.
func genAwayFrom(scale float64, kinks ...float64) bwGen {
	return func(rng *rand.Rand, n int) []float32 {
		f := make([]float32, n)
		for i := range f {
		again:
			v := scale * rng.NormFloat64()
			for _, k := range kinks {
				if math.Abs(v-k) < 0.05 {
					goto again
				}
			}
			f[i] = float32(v)
		}
		return f
	}
}

// genDistinct returns a shuffled ladder of values 0.013 apart, so that no
// two elements tie within a finite-difference step (for max pooling).
func genDistinct(rng *rand.Rand, n int) []float32 {
	f := make([]float32, n)
	for i, j := range rng.Perm(n) {
		f[i] = float32(j)*0.013 - float32(n)*0.0065
	}
	return f
}

func genPositive(rng *rand.Rand, n int) []float32 {
	f := make([]float32, n)
	for i := range f {
		f[i] = float32(0.5 + rng.Float64())
	}
	return f
}

// bwCase is one graph whose gradients are checked.
type bwCase struct {
	name  string
	opset int64
	// build adds the graph and returns the names of the trainable
	// initializers; all graph inputs get gradients too.
	build func(b *graphBuilder) []string
	gen   bwGen // input data (default genNormal)
}

// gradCheckResult is the worst mismatch over the checked tensors.
type gradCheckResult struct {
	name         string
	relNorm, rel float64
}

// bwLoss runs the program and returns Σ out·R over all outputs.
func bwLoss(t testing.TB, p *Program, in map[string]*Tensor, r map[string]*Tensor) float64 {
	t.Helper()
	if err := p.Forward(in); err != nil {
		t.Fatal(err)
	}
	var l float64
	for name, rt := range r {
		out := p.Value(name).F
		for i, v := range out {
			l += float64(v) * float64(rt.F[i])
		}
	}
	return l
}

// gradCheck compiles m with the trainable names, checks Backward against
// finite differences for every trainable tensor and every graph input,
// and returns the per-tensor errors. With piecewise set, the loss must be
// piecewise linear along each coordinate (true for graphs of Conv, BN,
// Relu, Add, Mul by a constant, pooling and Gemm, when each coordinate
// enters linearly): an element then also matches when a one-sided
// difference agrees, which tolerates a kink within eps of the point, and
// the tolerance is fdTolGraph.
func gradCheck(t *testing.T, m *onnxpb.ModelProto, gen bwGen, trainable []string, seed uint64, piecewise bool) []gradCheckResult {
	tol := fdTol
	if piecewise {
		tol = fdTolGraph
	}
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 99))
	if gen == nil {
		gen = genNormal
	}
	p := mustCompile(t, m, Options{Threads: 2, Trainable: trainable, KeepForBackward: true})
	in := map[string]*Tensor{}
	for _, name := range p.InputNames() {
		shape := p.InputShape(name)
		in[name] = NewTensorF(gen(rng, sizeOf(shape)), shape...)
	}
	if err := p.RequireInputGrad(p.InputNames()...); err != nil {
		t.Fatal(err)
	}
	r := map[string]*Tensor{}
	for _, name := range p.OutputNames() {
		r[name] = NewTensorF(genNormal(rng, sizeOf(p.Shape(name))), p.Shape(name)...)
	}
	bwLoss(t, p, in, r)
	if err := p.Backward(r); err != nil {
		t.Fatal(err)
	}
	type target struct {
		name string
		data []float32
	}
	var targets []target
	for _, n := range p.InputNames() {
		targets = append(targets, target{n, in[n].F})
	}
	for _, n := range p.ParamNames() {
		targets = append(targets, target{n, p.Param(n).F})
	}
	var res []gradCheckResult
	for _, tg := range targets {
		g := append([]float32(nil), p.Grad(tg.name)...)
		if len(g) != len(tg.data) {
			t.Fatalf("gradient of %q has %d values, want %d", tg.name, len(g), len(tg.data))
		}
		fd := make([]float64, len(g))
		l0 := 0.0
		if piecewise {
			l0 = bwLoss(t, p, in, r)
		}
		for i := range tg.data {
			v := tg.data[i]
			at := func(x float32) float64 {
				tg.data[i] = x
				l := bwLoss(t, p, in, r)
				tg.data[i] = v
				return l
			}
			// the steps actually taken in float32
			hp, hm := float64(v+fdEps)-float64(v), float64(v)-float64(v-fdEps)
			lp, lm := at(v+fdEps), at(v-fdEps)
			fd[i] = (lp - lm) / (hp + hm)
			if !piecewise {
				continue
			}
			// a kink inside [v-eps, v+eps] spoils the central difference;
			// a one-sided one is then exact. A larger step keeps float32
			// rounding of the loss below the differences of tiny
			// gradients and costs no truncation error on linear pieces.
			hp2, hm2 := float64(v+fdEpsPiecewise)-float64(v), float64(v)-float64(v-fdEpsPiecewise)
			lp2, lm2 := at(v+fdEpsPiecewise), at(v-fdEpsPiecewise)
			for _, d := range []float64{(lp - l0) / hp, (l0 - lm) / hm, (lp2 - lm2) / (hp2 + hm2), (lp2 - l0) / hp2, (l0 - lm2) / hm2} {
				if math.Abs(d-float64(g[i])) < math.Abs(fd[i]-float64(g[i])) {
					fd[i] = d
				}
			}
		}
		var num, den, maxFD, maxDiff float64
		for i := range fd {
			d := float64(g[i]) - fd[i]
			num += d * d
			den += fd[i] * fd[i]
			maxFD = max(maxFD, math.Abs(fd[i]))
			maxDiff = max(maxDiff, math.Abs(d))
		}
		rn := math.Sqrt(num) / max(math.Sqrt(den), 1e-12)
		re := maxDiff / max(maxFD, 1e-12)
		if den == 0 && num == 0 {
			rn, re = 0, 0
		}
		res = append(res, gradCheckResult{tg.name, rn, re})
		if rn > tol || re > tol {
			t.Errorf("gradient of %q: relative error %.2e (norm), %.2e (max element); want < %.0e\n got %v\n  fd %v",
				tg.name, rn, re, tol, g, fd)
		}
		if den == 0 {
			t.Errorf("gradient of %q is identically zero by finite differences: the case checks nothing", tg.name)
		}
	}
	// the same pass again gives the same gradients (zeroed per pass)
	first := map[string][]float32{}
	for _, tg := range targets {
		first[tg.name] = append([]float32(nil), p.Grad(tg.name)...)
	}
	bwLoss(t, p, in, r)
	if err := p.Backward(r); err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		for i, v := range p.Grad(tg.name) {
			if v != first[tg.name][i] {
				t.Fatalf("second Backward changed gradient %q[%d]: %v, was %v", tg.name, i, v, first[tg.name][i])
			}
		}
	}
	return res
}

func runBwCases(t *testing.T, cases []bwCase) {
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opset := c.opset
			if opset == 0 {
				opset = 13
			}
			b := newGraph(opset)
			b.rng = rand.New(rand.NewPCG(uint64(i)+1, 7))
			trainable := c.build(b)
			m := b.model()
			res := gradCheck(t, m, c.gen, trainable, uint64(i)+11, false)
			// the same with the inputs first copied into activations, whose
			// gradients the op under test writes outright (graph inputs
			// have their own, pre-zeroed gradient buffers)
			res = append(res, gradCheck(t, withInputCopies(m), c.gen, trainable, uint64(i)+11, false)...)
			worst := 0.0
			for _, r := range res {
				worst = max(worst, r.relNorm, r.rel)
			}
			t.Logf("%d tensors, worst relative error %.1e", len(res), worst)
		})
	}
}

// withInputCopies returns a copy of m in which every graph input first
// goes through a Mul by the scalar 1 and the nodes read that product.
func withInputCopies(m *onnxpb.ModelProto) *onnxpb.ModelProto {
	g := &onnxpb.GraphProto{Name: m.Graph.Name, Input: m.Graph.Input, Output: m.Graph.Output,
		Initializer: append([]*onnxpb.TensorProto{onnxio.NewFloat32("bw_one", nil, []float32{1})}, m.Graph.Initializer...)}
	rename := map[string]string{}
	for _, in := range m.Graph.Input {
		cp := in.Name + "_copy"
		rename[in.Name] = cp
		g.Node = append(g.Node, &onnxpb.NodeProto{Name: cp, OpType: "Mul", Input: []string{in.Name, "bw_one"}, Output: []string{cp}})
	}
	for _, n := range m.Graph.Node {
		nn := &onnxpb.NodeProto{Name: n.Name, OpType: n.OpType, Output: n.Output, Attribute: n.Attribute}
		for _, x := range n.Input {
			if r, ok := rename[x]; ok {
				x = r
			}
			nn.Input = append(nn.Input, x)
		}
		g.Node = append(g.Node, nn)
	}
	return &onnxpb.ModelProto{IrVersion: m.IrVersion, OpsetImport: m.OpsetImport, Graph: g}
}

// conv adds a Conv node with the given attributes and a trainable weight
// and bias, returning the output and the trainable names.
func (b *graphBuilder) bwConv(x string, cin, cout, group int, k []int, attrs ...*onnxpb.AttributeProto) (string, []string) {
	shape := append([]int{cout, cin / group}, k...)
	w := b.weight(0.5, shape...)
	bias := b.weight(0.5, cout)
	return b.node("Conv", []string{x, w, bias}, attrs...), []string{w, bias}
}

func TestBackwardConv(t *testing.T) {
	conv := func(in []int, cout, group int, k []int, attrs ...*onnxpb.AttributeProto) func(b *graphBuilder) []string {
		return func(b *graphBuilder) []string {
			x := b.input("x", in...)
			y, tr := b.bwConv(x, in[1], cout, group, k, attrs...)
			b.output(y)
			return tr
		}
	}
	k3 := []int{3, 3}
	runBwCases(t, []bwCase{
		{name: "3x3 pad1", build: conv([]int{2, 3, 5, 5}, 4, 1, k3, attrInts("pads", 1, 1, 1, 1))},
		{name: "3x3 stride2 asym pads", build: conv([]int{2, 3, 7, 6}, 4, 1, k3, attrInts("strides", 2, 2), attrInts("pads", 1, 0, 2, 1))},
		{name: "3x2 dilation2 stride(1,2)", build: conv([]int{1, 2, 7, 7}, 3, 1, []int{3, 2}, attrInts("dilations", 2, 2), attrInts("strides", 1, 2), attrInts("pads", 2, 1, 0, 1))},
		{name: "auto_pad SAME_UPPER stride2", build: conv([]int{2, 2, 5, 5}, 3, 1, k3, attrInts("strides", 2, 2), &onnxpb.AttributeProto{Name: "auto_pad", Type: onnxpb.AttributeProto_STRING, S: []byte("SAME_UPPER")})},
		{name: "groups2", build: conv([]int{2, 4, 5, 5}, 6, 2, k3, attrInts("pads", 1, 1, 1, 1), attrInt("group", 2))},
		{name: "depthwise 3x3", build: conv([]int{2, 4, 6, 6}, 4, 4, k3, attrInts("pads", 1, 1, 1, 1), attrInt("group", 4))},
		{name: "depthwise 3x3 stride2", build: conv([]int{2, 4, 7, 7}, 4, 4, k3, attrInts("strides", 2, 2), attrInts("pads", 1, 1, 1, 1), attrInt("group", 4))},
		{name: "depthwise 5x5 pad2", build: conv([]int{1, 3, 6, 5}, 3, 3, []int{5, 5}, attrInts("pads", 2, 2, 2, 2), attrInt("group", 3))},
		{name: "depthwise multiplier2", build: conv([]int{2, 3, 5, 5}, 6, 3, k3, attrInts("pads", 1, 1, 1, 1), attrInt("group", 3))},
		{name: "pointwise", build: conv([]int{3, 5, 4, 3}, 6, 1, []int{1, 1})},
		{name: "pointwise groups2", build: conv([]int{2, 4, 3, 3}, 6, 2, []int{1, 1}, attrInt("group", 2))},
		{name: "pointwise per-channel (group=C)", build: conv([]int{2, 4, 3, 3}, 4, 4, []int{1, 1}, attrInt("group", 4))},
		{name: "1x1 stride2", build: conv([]int{2, 3, 5, 5}, 4, 1, []int{1, 1}, attrInts("strides", 2, 2))},
		{name: "1-D", build: conv([]int{2, 3, 9}, 4, 1, []int{3}, attrInts("pads", 1, 2), attrInts("strides", 2))},
		{name: "no bias", build: func(b *graphBuilder) []string {
			x := b.input("x", 2, 3, 5, 5)
			w := b.weight(0.5, 4, 3, 3, 3)
			b.output(b.node("Conv", []string{x, w}))
			return []string{w}
		}},
	})
}

func TestBackwardBatchNorm(t *testing.T) {
	runBwCases(t, []bwCase{
		{name: "all inputs trainable", build: func(b *graphBuilder) []string {
			x := b.input("x", 2, 3, 4, 4)
			g, be, mu := b.weight(1, 3), b.weight(1, 3), b.weight(1, 3)
			vr := b.initF([]float32{0.5, 1.2, 2.0}, 3)
			b.output(b.node("BatchNormalization", []string{x, g, be, mu, vr}, attrFloat("epsilon", 1e-3)))
			return []string{g, be, mu, vr}
		}},
		{name: "rank 2 constant stats", build: func(b *graphBuilder) []string {
			x := b.input("x", 4, 3)
			g, be := b.weight(1, 3), b.weight(1, 3)
			mu, vr := b.weight(1, 3), b.initF([]float32{0.7, 1, 1.5}, 3)
			b.output(b.node("BatchNormalization", []string{x, g, be, mu, vr}))
			return []string{g, be}
		}},
	})
}

func TestBackwardPool(t *testing.T) {
	pool := func(op string, in []int, attrs ...*onnxpb.AttributeProto) func(b *graphBuilder) []string {
		return func(b *graphBuilder) []string {
			b.output(b.node(op, []string{b.input("x", in...)}, attrs...))
			return nil
		}
	}
	k := func(v ...int64) *onnxpb.AttributeProto { return attrInts("kernel_shape", v...) }
	runBwCases(t, []bwCase{
		{name: "max 3x3 s2 p1", gen: genDistinct, build: pool("MaxPool", []int{2, 2, 7, 7}, k(3, 3), attrInts("strides", 2, 2), attrInts("pads", 1, 1, 1, 1))},
		{name: "max 2x2 ceil", gen: genDistinct, build: pool("MaxPool", []int{1, 3, 5, 5}, k(2, 2), attrInts("strides", 2, 2), attrInt("ceil_mode", 1))},
		{name: "max 3x3 s2 ceil pad", gen: genDistinct, build: pool("MaxPool", []int{1, 2, 8, 6}, k(3, 3), attrInts("strides", 2, 2), attrInts("pads", 1, 0, 1, 0), attrInt("ceil_mode", 1))},
		{name: "max dilated", gen: genDistinct, build: pool("MaxPool", []int{1, 2, 7, 7}, k(2, 2), attrInts("dilations", 2, 2))},
		{name: "max 1-D", gen: genDistinct, build: pool("MaxPool", []int{2, 2, 9}, k(3), attrInts("strides", 2))},
		{name: "avg 3x3 s2 p1 exclude pad", build: pool("AveragePool", []int{2, 2, 7, 7}, k(3, 3), attrInts("strides", 2, 2), attrInts("pads", 1, 1, 1, 1))},
		{name: "avg 3x3 s2 p1 include pad", build: pool("AveragePool", []int{2, 2, 7, 7}, k(3, 3), attrInts("strides", 2, 2), attrInts("pads", 1, 1, 1, 1), attrInt("count_include_pad", 1))},
		{name: "avg 2x2 ceil", build: pool("AveragePool", []int{1, 3, 5, 5}, k(2, 2), attrInts("strides", 2, 2), attrInt("ceil_mode", 1))},
		{name: "avg 3x3 ceil include pad", build: pool("AveragePool", []int{1, 2, 6, 6}, k(3, 3), attrInts("strides", 2, 2), attrInts("pads", 1, 1, 1, 1), attrInt("ceil_mode", 1), attrInt("count_include_pad", 1))},
		{name: "global average", build: pool("GlobalAveragePool", []int{2, 3, 4, 5})},
		{name: "global max", gen: genDistinct, build: pool("GlobalMaxPool", []int{2, 3, 4, 5})},
	})
}

func TestBackwardUnary(t *testing.T) {
	unary := func(op string, attrs ...*onnxpb.AttributeProto) func(b *graphBuilder) []string {
		return func(b *graphBuilder) []string {
			b.output(b.node(op, []string{b.input("x", 2, 3, 4)}, attrs...))
			return nil
		}
	}
	runBwCases(t, []bwCase{
		{name: "Relu", gen: genAwayFrom(1, 0), build: unary("Relu")},
		{name: "LeakyRelu", gen: genAwayFrom(1, 0), build: unary("LeakyRelu", attrFloat("alpha", 0.1))},
		{name: "Sigmoid", build: unary("Sigmoid")},
		{name: "HardSigmoid", gen: genAwayFrom(3, -2.5, 2.5), build: unary("HardSigmoid")},
		{name: "HardSwish", opset: 14, gen: genAwayFrom(3, -3, 3), build: unary("HardSwish")},
		{name: "Tanh", build: unary("Tanh")},
		{name: "Exp", build: unary("Exp")},
		{name: "Neg", build: unary("Neg")},
		{name: "Abs", gen: genAwayFrom(1, 0), build: unary("Abs")},
		{name: "Sqrt", gen: genPositive, build: unary("Sqrt")},
		{name: "Clip opset 9", opset: 9, gen: genAwayFrom(2, -1, 1.5), build: unary("Clip", attrFloat("min", -1), attrFloat("max", 1.5))},
		{name: "Clip opset 13 (relu6)", gen: genAwayFrom(4, 0, 6), build: func(b *graphBuilder) []string {
			x := b.input("x", 2, 3, 4)
			b.output(b.node("Clip", []string{x, b.initF([]float32{0}), b.initF([]float32{6})}))
			return nil
		}},
		{name: "Clip opset 13 max only", gen: genAwayFrom(1, 0.5), build: func(b *graphBuilder) []string {
			x := b.input("x", 2, 3, 4)
			b.output(b.node("Clip", []string{x, "", b.initF([]float32{0.5})}))
			return nil
		}},
	})
}

func TestBackwardBinaryBroadcast(t *testing.T) {
	type shapes struct{ a, b []int }
	cases := []shapes{
		{[]int{2, 3, 4}, []int{2, 3, 4}},
		{[]int{2, 3, 4, 5}, []int{1, 3, 1, 1}}, // per-channel scale
		{[]int{1, 3, 1, 1}, []int{2, 3, 4, 5}},
		{[]int{2, 3, 4}, []int{4}},
		{[]int{2, 1, 4}, []int{3, 1}},
		{[]int{3, 4}, []int{}},
		{[]int{2, 3, 1, 5}, []int{2, 1, 4, 1}},
	}
	var bc []bwCase
	for _, op := range []string{"Add", "Sub", "Mul", "Div"} {
		for _, s := range cases {
			s := s
			op := op
			bc = append(bc, bwCase{name: fmt.Sprintf("%s %v %v", op, s.a, s.b), build: func(b *graphBuilder) []string {
				x := b.input("x", s.a...)
				var w string
				if op == "Div" {
					w = b.initF(genPositive(b.rng, sizeOf(s.b)), s.b...)
				} else {
					w = b.weight(1, s.b...)
				}
				b.output(b.node(op, []string{x, w}))
				return []string{w}
			}})
		}
	}
	// the same tensor on both sides, and two graph inputs
	bc = append(bc, bwCase{name: "Mul x x", build: func(b *graphBuilder) []string {
		x := b.input("x", 2, 3)
		b.output(b.node("Mul", []string{x, x}))
		return nil
	}}, bwCase{name: "Sub inputs broadcast", build: func(b *graphBuilder) []string {
		x, y := b.input("x", 2, 3, 4), b.input("y", 3, 1)
		b.output(b.node("Sub", []string{x, y}))
		return nil
	}})
	runBwCases(t, bc)
}

func TestBackwardGemmMatMul(t *testing.T) {
	gemm := func(ta, tb int64, cshape []int, alpha, beta float32) func(b *graphBuilder) []string {
		return func(b *graphBuilder) []string {
			const m, k, n = 3, 4, 5
			as := []int{m, k}
			if ta != 0 {
				as = []int{k, m}
			}
			bs := []int{k, n}
			if tb != 0 {
				bs = []int{n, k}
			}
			x := b.input("x", as...)
			w := b.weight(1, bs...)
			ins, tr := []string{x, w}, []string{w}
			if cshape != nil {
				c := b.weight(1, cshape...)
				ins, tr = append(ins, c), append(tr, c)
			}
			b.output(b.node("Gemm", ins, attrInt("transA", ta), attrInt("transB", tb), attrFloat("alpha", alpha), attrFloat("beta", beta)))
			return tr
		}
	}
	matmul := func(as, bs []int) func(b *graphBuilder) []string {
		return func(b *graphBuilder) []string {
			x := b.input("x", as...)
			w := b.weight(1, bs...)
			b.output(b.node("MatMul", []string{x, w}))
			return []string{w}
		}
	}
	runBwCases(t, []bwCase{
		{name: "Gemm", build: gemm(0, 0, []int{5}, 1, 1)},
		{name: "Gemm transB (Linear)", build: gemm(0, 1, []int{5}, 1, 1)},
		{name: "Gemm transA", build: gemm(1, 0, []int{3, 5}, 0.5, 2)},
		{name: "Gemm transA transB", build: gemm(1, 1, []int{3, 1}, 1.5, 0.7)},
		{name: "Gemm scalar C", build: gemm(0, 1, []int{1}, 1, 1)},
		{name: "Gemm no C", build: gemm(0, 0, nil, 2, 1)},
		{name: "MatMul flat", build: matmul([]int{2, 3, 4}, []int{4, 5})},
		{name: "MatMul batched broadcast", build: matmul([]int{2, 1, 3, 4}, []int{3, 4, 2})},
		{name: "MatMul vector", build: matmul([]int{4}, []int{4, 3})},
		{name: "MatMul matrix-vector", build: matmul([]int{2, 3, 4}, []int{4})},
	})
}

func TestBackwardReduceSoftmax(t *testing.T) {
	one := func(op string, in []int, extra []string, attrs ...*onnxpb.AttributeProto) func(b *graphBuilder) []string {
		return func(b *graphBuilder) []string {
			b.output(b.node(op, append([]string{b.input("x", in...)}, extra...), attrs...))
			return nil
		}
	}
	runBwCases(t, []bwCase{
		{name: "ReduceMean HW keepdims", build: one("ReduceMean", []int{2, 3, 4, 5}, nil, attrInts("axes", 2, 3))},
		{name: "ReduceMean HW dropped", build: one("ReduceMean", []int{2, 3, 4, 5}, nil, attrInts("axes", 2, -1), attrInt("keepdims", 0))},
		{name: "ReduceMean axis 1", build: one("ReduceMean", []int{2, 3, 4}, nil, attrInts("axes", 1))},
		{name: "ReduceMean all", build: one("ReduceMean", []int{2, 3, 4}, nil)},
		{name: "ReduceSum axes input", opset: 13, build: func(b *graphBuilder) []string {
			x := b.input("x", 2, 3, 4)
			b.output(b.node("ReduceSum", []string{x, b.initI([]int64{0, 2}, 2)}, attrInt("keepdims", 0)))
			return nil
		}},
		{name: "Softmax", build: one("Softmax", []int{2, 3, 4}, nil, attrInt("axis", 1))},
		{name: "Softmax opset 11", opset: 11, build: one("Softmax", []int{2, 3, 4}, nil, attrInt("axis", 1))},
		{name: "LogSoftmax", build: one("LogSoftmax", []int{3, 5}, nil)},
	})
}

// multiNode adds a node with several outputs.
func (b *graphBuilder) multiNode(op string, inputs []string, nOut int, attrs ...*onnxpb.AttributeProto) []string {
	b.n++
	var outs []string
	for i := 0; i < nOut; i++ {
		outs = append(outs, fmt.Sprintf("%s_%d_%d", op, b.n, i))
	}
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{Name: fmt.Sprintf("n%d", b.n), OpType: op, Input: inputs, Output: outs, Attribute: attrs})
	return outs
}

func TestBackwardShapeOps(t *testing.T) {
	runBwCases(t, []bwCase{
		{name: "Concat axis 1 with fan-out", build: func(b *graphBuilder) []string {
			x, y := b.input("x", 2, 3, 2), b.input("y", 2, 1, 2)
			w := b.weight(1, 2, 2, 2)
			b.output(b.node("Concat", []string{x, y, w, x}, attrInt("axis", 1)))
			return []string{w}
		}},
		{name: "Concat axis -1", build: func(b *graphBuilder) []string {
			x, y := b.input("x", 2, 3), b.input("y", 2, 2)
			b.output(b.node("Concat", []string{x, y}, attrInt("axis", -1)))
			return nil
		}},
		{name: "Split opset 13 one output unused", build: func(b *graphBuilder) []string {
			x := b.input("x", 2, 6, 3)
			outs := b.multiNode("Split", []string{x, b.initI([]int64{1, 3, 2}, 3)}, 3, attrInt("axis", 1))
			b.output(outs[0])
			b.output(b.node("Relu", []string{outs[2]}))
			return nil
		}, gen: genAwayFrom(1, 0)},
		{name: "Split opset 9 equal (ShuffleNet chunk)", opset: 9, build: func(b *graphBuilder) []string {
			x := b.input("x", 2, 4, 3)
			outs := b.multiNode("Split", []string{x}, 2, attrInt("axis", 1))
			b.output(outs[0])
			b.output(outs[1])
			return nil
		}},
		{name: "Slice steps", build: func(b *graphBuilder) []string {
			x := b.input("x", 3, 7, 5)
			b.output(b.node("Slice", []string{x, b.initI([]int64{1, 4}, 2), b.initI([]int64{7, 0}, 2), b.initI([]int64{1, 2}, 2), b.initI([]int64{2, -2}, 2)}))
			return nil
		}},
		{name: "Slice opset 9", opset: 9, build: func(b *graphBuilder) []string {
			x := b.input("x", 2, 6, 3)
			b.output(b.node("Slice", []string{x}, attrInts("starts", 3), attrInts("ends", 6), attrInts("axes", 1)))
			return nil
		}},
		{name: "channel shuffle", build: func(b *graphBuilder) []string {
			x := b.input("x", 2, 6, 2, 2)
			r := b.node("Reshape", []string{x, b.initI([]int64{2, 2, 3, 2, 2}, 5)})
			tr := b.node("Transpose", []string{r}, attrInts("perm", 0, 2, 1, 3, 4))
			b.output(b.node("Reshape", []string{tr, b.initI([]int64{2, -1, 2, 2}, 4)}))
			return nil
		}},
		{name: "views of a parameter", build: func(b *graphBuilder) []string {
			x := b.input("x", 2, 6)
			w := b.weight(1, 3, 2)
			f := b.node("Flatten", []string{w}, attrInt("axis", 0))
			u := b.node("Unsqueeze", []string{f, b.initI([]int64{0}, 1)})
			s := b.node("Squeeze", []string{u, b.initI([]int64{0, 1}, 2)})
			id := b.node("Identity", []string{s})
			d := b.node("Dropout", []string{id})
			b.output(b.node("Mul", []string{x, d}))
			return []string{w}
		}},
		{name: "Transpose default perm", build: func(b *graphBuilder) []string {
			b.output(b.node("Transpose", []string{b.input("x", 2, 3, 4)}))
			return nil
		}},
		{name: "Cast float to float", build: func(b *graphBuilder) []string {
			x := b.input("x", 2, 3)
			b.output(b.node("Cast", []string{x}, attrInt("to", int64(onnxpb.TensorProto_FLOAT))))
			return nil
		}},
		{name: "shared weight", build: func(b *graphBuilder) []string {
			x := b.input("x", 3, 3, 4, 4)
			w := b.weight(0.5, 3, 3, 1, 1)
			y := b.node("Conv", []string{x, w})
			y = b.node("Conv", []string{y, w})
			b.output(b.node("Mul", []string{y, w}))
			return []string{w}
		}},
		{name: "Gather float", build: func(b *graphBuilder) []string {
			x := b.input("x", 4, 3)
			b.output(b.node("Gather", []string{x, b.initI([]int64{3, 0, 3, -1}, 2, 2)}, attrInt("axis", 0)))
			return nil
		}},
	})
}

// lprGraph builds a small network with the structure that fine-tuning
// trains: depthwise Conv → Relu → LPR module (1x1 C→r, 1x1 r→C with bias,
// a residual of the given kind, Add) → [BN] → Relu → GlobalAveragePool →
// Flatten → Gemm. It returns the model and the LPR and head parameters.
func lprGraph(residual string, withBN bool, n, c, r, hw int) (*onnxpb.ModelProto, []string) {
	b := newGraph(13)
	b.rng = rand.New(rand.NewPCG(5, 6))
	x := b.input("input", n, c, hw, hw)
	x = b.convRelu(x, c, c, 3, 1, c)
	a := b.weight(float32(1/math.Sqrt(float64(c))), r, c, 1, 1)
	bw := b.weight(float32(1/math.Sqrt(float64(r))), c, r, 1, 1)
	bias := b.weight(0.1, c)
	y := b.node("Conv", []string{b.node("Conv", []string{x, a}), bw, bias})
	tr := []string{a, bw, bias}
	var res string
	switch residual {
	case "identity":
		res = x
	case "diag":
		d := b.weight(0.5, 1, c, 1, 1)
		res = b.node("Mul", []string{x, d})
		tr = append(tr, d)
	case "diagconv": // the diag residual as convert writes it: a grouped 1x1 Conv
		d := b.weight(0.5, c, 1, 1, 1)
		res = b.node("Conv", []string{x, d}, attrInt("group", int64(c)))
		tr = append(tr, d)
	case "dw3x3":
		d := b.weight(0.3, c, 1, 3, 3)
		res = b.node("Conv", []string{x, d}, attrInts("pads", 1, 1, 1, 1), attrInt("group", int64(c)))
		tr = append(tr, d)
	}
	if res != "" {
		y = b.node("Add", []string{y, res})
	}
	if withBN {
		g, be, mu := b.weight(0.3, c), b.weight(0.3, c), b.weight(0.3, c)
		vr := b.initF(genPositive(b.rng, c), c)
		y = b.node("BatchNormalization", []string{y, g, be, mu, vr})
		tr = append(tr, g, be)
	}
	y = b.node("Relu", []string{y})
	y = b.node("GlobalAveragePool", []string{y})
	y = b.node("Flatten", []string{y})
	fw, fb := b.weight(0.3, 5, c), b.weight(0.1, 5)
	b.output(b.node("Gemm", []string{y, fw, fb}, attrInt("transB", 1)))
	return b.model(), append(tr, fw, fb)
}

func TestBackwardLPRGraph(t *testing.T) {
	for _, tc := range []struct {
		res  string
		bn   bool
		conv bool // train the first (depthwise) convolution too
	}{
		{"identity", false, false}, {"diag", false, false}, {"diagconv", false, false}, {"dw3x3", false, true},
		{"none", true, false}, {"diag", true, true},
	} {
		t.Run(fmt.Sprintf("%s bn=%v", tc.res, tc.bn), func(t *testing.T) {
			m, tr := lprGraph(tc.res, tc.bn, 2, 6, 2, 5)
			if tc.conv {
				tr = append(tr, m.Graph.Node[0].Input[1], m.Graph.Node[0].Input[2])
			}
			res := gradCheck(t, m, nil, tr, 3, true)
			for _, r := range res {
				t.Logf("%-8s norm %.1e max %.1e", r.name, r.relNorm, r.rel)
			}
		})
	}
}

// TestBackwardSkipsUnneededGradients checks that no gradient is computed
// or exposed for graph inputs (unless asked) and constants, and that a
// trainable tensor that does not reach the seeded output gets zeros.
func TestBackwardSkipsUnneededGradients(t *testing.T) {
	m, tr := lprGraph("diag", false, 2, 4, 2, 4)
	first := m.Graph.Node[0].Input[1]
	p := mustCompile(t, m, Options{Threads: 2, Trainable: tr, KeepForBackward: true})
	in := map[string]*Tensor{"input": randTensor(rand.New(rand.NewPCG(1, 1)), 2, 4, 4, 4)}
	if err := p.Forward(in); err != nil {
		t.Fatal(err)
	}
	out := p.OutputNames()[0]
	if err := p.Backward(map[string]*Tensor{out: randTensor(rand.New(rand.NewPCG(2, 2)), 2, 5)}); err != nil {
		t.Fatal(err)
	}
	if g := p.Grad("input"); g != nil {
		t.Fatalf("gradient of the graph input exists without RequireInputGrad")
	}
	if g := p.Grad(first); g != nil {
		t.Fatalf("gradient of constant %q exists", first)
	}
	// the first Conv reads no trainable tensor: its backward must not run
	gs := p.grads
	for si, st := range p.Steps() {
		if st.Node == m.Graph.Node[0] && gs.active[si] {
			t.Fatalf("the first Conv is active in backward")
		}
	}
	for _, n := range tr {
		if len(p.Grad(n)) != p.Param(n).Size() {
			t.Fatalf("gradient of %q has %d values, want %d", n, len(p.Grad(n)), p.Param(n).Size())
		}
	}
	// the gradient arena reuses memory: smaller than the sum of gradients
	if p.GradArenaBytes() >= p.PeakActivationBytes() {
		t.Fatalf("gradient arena %d bytes, activations %d: no reuse", p.GradArenaBytes(), p.PeakActivationBytes())
	}
}

// TestBackwardObservedSeed seeds an intermediate value named in
// Options.Outputs together with the graph output and checks the sum.
func TestBackwardObservedSeed(t *testing.T) {
	m, tr := lprGraph("identity", false, 2, 4, 2, 4)
	mid := m.Graph.Node[4].Output[0] // the LPR Add
	if m.Graph.Node[4].OpType != "Add" {
		t.Fatalf("node 4 is %s, want Add", m.Graph.Node[4].OpType)
	}
	rng := rand.New(rand.NewPCG(4, 4))
	in := map[string]*Tensor{"input": randTensor(rng, 2, 4, 4, 4)}
	p := mustCompile(t, m, Options{Threads: 2, Trainable: tr, KeepForBackward: true, Outputs: []string{mid}})
	out := p.OutputNames()[0]
	rOut, rMid := randTensor(rng, p.Shape(out)...), randTensor(rng, p.Shape(mid)...)
	grads := func(seeds map[string]*Tensor) map[string][]float32 {
		if err := p.Forward(in); err != nil {
			t.Fatal(err)
		}
		if err := p.Backward(seeds); err != nil {
			t.Fatal(err)
		}
		g := map[string][]float32{}
		for _, n := range tr {
			g[n] = append([]float32(nil), p.Grad(n)...)
		}
		return g
	}
	gOut := grads(map[string]*Tensor{out: rOut})
	gMid := grads(map[string]*Tensor{mid: rMid})
	gBoth := grads(map[string]*Tensor{out: rOut, mid: rMid})
	for _, n := range tr {
		for i := range gBoth[n] {
			want := gOut[n][i] + gMid[n][i]
			if d := math.Abs(float64(gBoth[n][i] - want)); d > 1e-5*(1+math.Abs(float64(want))) {
				t.Fatalf("%s[%d]: both seeds give %v, sum of separate seeds %v", n, i, gBoth[n][i], want)
			}
		}
	}
	// the head's parameters get nothing from a seed below them
	for _, n := range tr[len(tr)-2:] {
		for _, v := range gMid[n] {
			if v != 0 {
				t.Fatalf("%s gets gradient %v from a seed upstream of it", n, v)
			}
		}
	}
}

func TestBackwardErrors(t *testing.T) {
	m, tr := lprGraph("diag", false, 1, 4, 2, 4)
	p := mustCompile(t, m, Options{Trainable: tr})
	out := p.OutputNames()[0]
	if err := p.Backward(map[string]*Tensor{out: NewTensor(1, 5)}); err == nil {
		t.Fatalf("Backward without KeepForBackward succeeded")
	}
	k := mustCompile(t, m, Options{Trainable: tr, KeepForBackward: true})
	if err := k.Forward(map[string]*Tensor{"input": NewTensor(1, 4, 4, 4)}); err != nil {
		t.Fatal(err)
	}
	if err := k.Backward(map[string]*Tensor{"nope": NewTensor(1, 5)}); err == nil {
		t.Fatalf("seed on an unknown value accepted")
	}
	if err := k.Backward(map[string]*Tensor{m.Graph.Node[1].Output[0]: NewTensor(1, 4, 4, 4)}); err == nil {
		t.Fatalf("seed on an intermediate value not named in Outputs accepted")
	}
	if err := k.Backward(map[string]*Tensor{out: NewTensor(1, 4)}); err == nil {
		t.Fatalf("seed of the wrong size accepted")
	}
	if err := k.RequireInputGrad("nope"); err == nil {
		t.Fatalf("RequireInputGrad accepted a non-input")
	}
}

// TestBackwardFusedActivation runs Backward on a program whose only Conv
// carries a fused Relu (all activations are outputs, so the program keeps
// them even without KeepForBackward) and compares with the unfused one.
func TestBackwardFusedActivation(t *testing.T) {
	for _, act := range []string{"Relu", "Clip"} {
		b := newGraph(13)
		x := b.input("x", 2, 3, 5, 5)
		w, bias := b.weight(0.5, 4, 3, 3, 3), b.weight(0.5, 4)
		y := b.node("Conv", []string{x, w, bias}, attrInts("pads", 1, 1, 1, 1))
		if act == "Relu" {
			y = b.node("Relu", []string{y})
		} else {
			y = b.node("Clip", []string{y, b.initF([]float32{-0.5}), b.initF([]float32{0.7})})
		}
		b.output(y)
		m := b.model()
		rng := rand.New(rand.NewPCG(8, 8))
		in := map[string]*Tensor{"x": randTensor(rng, 2, 3, 5, 5)}
		seed := randTensor(rng, 2, 4, 5, 5)
		grads := func(keep bool) ([]float32, []float32) {
			p := mustCompile(t, m, Options{Trainable: []string{w, bias}, KeepForBackward: keep})
			if fused := len(p.Steps()) == 1; fused == keep {
				t.Fatalf("%s: keep=%v gives %d steps", act, keep, len(p.Steps()))
			}
			if err := p.Forward(in); err != nil {
				t.Fatal(err)
			}
			if err := p.Backward(map[string]*Tensor{y: seed}); err != nil {
				t.Fatal(err)
			}
			return append([]float32(nil), p.Grad(w)...), append([]float32(nil), p.Grad(bias)...)
		}
		fw, fb := grads(false)
		uw, ub := grads(true)
		for i := range fw {
			if math.Abs(float64(fw[i]-uw[i])) > 1e-5 {
				t.Fatalf("%s: fused dW[%d] = %v, unfused %v", act, i, fw[i], uw[i])
			}
		}
		for i := range fb {
			if math.Abs(float64(fb[i]-ub[i])) > 1e-5 {
				t.Fatalf("%s: fused dB[%d] = %v, unfused %v", act, i, fb[i], ub[i])
			}
		}
	}
}

// TestBackwardBNNotFoldedIntoTrainableConv checks that a BatchNormalization
// after a trainable Conv stays a separate step, so Param returns the
// weights as given, and that a BN after a constant Conv is still folded.
func TestBackwardBNNotFoldedIntoTrainableConv(t *testing.T) {
	m, _ := lprGraph("none", true, 1, 4, 2, 4)
	var bw string
	for _, n := range m.Graph.Node {
		if n.OpType == "BatchNormalization" {
			bw = n.Input[0]
		}
	}
	var convW string
	var orig []float32
	for _, n := range m.Graph.Node {
		if n.OpType == "Conv" && n.Output[0] == bw {
			convW = n.Input[1]
		}
	}
	for _, init := range m.Graph.Initializer {
		if init.Name == convW {
			tt, err := TensorFromProto(init)
			if err != nil {
				t.Fatal(err)
			}
			orig = tt.F
		}
	}
	count := func(p *Program) int {
		n := 0
		for _, st := range p.Steps() {
			if _, ok := st.Op.(*BatchNormOp); ok {
				n++
			}
		}
		return n
	}
	p := mustCompile(t, m, Options{Trainable: []string{convW}, KeepForBackward: true})
	if count(p) != 1 {
		t.Fatalf("BN folded into a trainable Conv")
	}
	if !slices.Equal(p.Param(convW).F, orig) {
		t.Fatalf("Param(%q) differs from the initializer", convW)
	}
	if c := count(mustCompile(t, m, Options{KeepForBackward: true})); c != 0 {
		t.Fatalf("BN after a constant Conv not folded (%d BN steps)", c)
	}
}

// TestSGDReducesLoss trains the LPR factors of a perturbed student to
// match a teacher (the same graph with the original weights) by plain SGD
// on the mean squared error of the outputs.
func TestSGDReducesLoss(t *testing.T) {
	m, tr := lprGraph("diag", false, 8, 8, 3, 6)
	rng := rand.New(rand.NewPCG(12, 13))
	in := map[string]*Tensor{"input": randTensor(rng, 8, 8, 6, 6)}
	teacher := mustCompile(t, m, Options{})
	tout, err := teacher.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	out := teacher.OutputNames()[0]
	target := tout[out]
	p := mustCompile(t, m, Options{Threads: 2, Trainable: tr, KeepForBackward: true})
	for _, n := range tr {
		for i := range p.Param(n).F {
			p.Param(n).F[i] += 0.3 * float32(rng.NormFloat64())
		}
	}
	dOut := NewTensor(target.Shape...)
	loss := func() float64 {
		if err := p.Forward(in); err != nil {
			t.Fatal(err)
		}
		var l float64
		y := p.Value(out).F
		for i, v := range y {
			d := v - target.F[i]
			l += 0.5 * float64(d*d) / float64(len(y))
			dOut.F[i] = d / float32(len(y))
		}
		return l
	}
	const lr = 0.5
	l0 := loss()
	prev := l0
	for step := 0; step < 30; step++ {
		if err := p.Backward(map[string]*Tensor{out: dOut}); err != nil {
			t.Fatal(err)
		}
		for _, n := range tr {
			w, g := p.Param(n).F, p.Grad(n)
			for i := range w {
				w[i] -= lr * g[i]
			}
		}
		l := loss()
		if l > prev*1.0001 {
			t.Fatalf("step %d: loss rose from %.6g to %.6g", step, prev, l)
		}
		prev = l
	}
	if prev > 0.3*l0 {
		t.Fatalf("30 SGD steps took the loss from %.4g to %.4g only", l0, prev)
	}
	t.Logf("loss %.4g -> %.4g", l0, prev)
}

func TestBackwardDoesNotAllocate(t *testing.T) {
	m := mobileNetV1(0.25, 32, 10)
	var tr []string
	for _, init := range m.Graph.Initializer {
		tr = append(tr, init.Name)
	}
	p := mustCompile(t, m, Options{Threads: 2, Trainable: tr, KeepForBackward: true, InputShapes: map[string][]int{"input": {2, 3, 32, 32}}})
	in := map[string]*Tensor{"input": randTensor(rand.New(rand.NewPCG(1, 2)), 2, 3, 32, 32)}
	out := p.OutputNames()[0]
	seeds := map[string]*Tensor{out: randTensor(rand.New(rand.NewPCG(3, 4)), 2, 10)}
	step := func() {
		if err := p.Forward(in); err != nil {
			t.Fatal(err)
		}
		if err := p.Backward(seeds); err != nil {
			t.Fatal(err)
		}
	}
	step()
	if allocs := testing.AllocsPerRun(3, step); allocs != 0 {
		t.Fatalf("Forward+Backward allocates %v times per step", allocs)
	}
}

// shuffleGraph builds a small ShuffleNetV2-like network as torchvision
// exports it: Conv 3x3 s2 + BN + Relu, MaxPool 3x3 s2 p1, one unit
// (channel split, 1x1 + BN + Relu, depthwise 3x3 + BN, 1x1 + BN + Relu,
// Concat, channel shuffle by Reshape/Transpose/Reshape), ReduceMean over
// H and W, Gemm. Every initializer but the BN statistics is returned as
// trainable.
func shuffleGraph(opset int64) (*onnxpb.ModelProto, []string) {
	b := newGraph(opset)
	b.rng = rand.New(rand.NewPCG(9, 10))
	var tr []string
	convBN := func(x string, cin, cout, k, stride, group int, relu bool) string {
		w := b.weight(float32(1.5/math.Sqrt(float64(cin/group*k*k))), cout, cin/group, k, k)
		p := int64(k / 2)
		y := b.node("Conv", []string{x, w}, attrInts("kernel_shape", int64(k), int64(k)),
			attrInts("strides", int64(stride), int64(stride)), attrInts("pads", p, p, p, p), attrInt("group", int64(group)))
		g, be, mu := b.weight(0.3, cout), b.weight(0.2, cout), b.weight(0.2, cout)
		for i, init := range b.g.Initializer {
			if init.Name == g {
				t, _ := TensorFromProto(init)
				for j := range t.F {
					t.F[j] += 1
				}
				b.g.Initializer[i] = t.ToProto(g)
			}
		}
		vr := b.initF(genPositive(b.rng, cout), cout)
		y = b.node("BatchNormalization", []string{y, g, be, mu, vr})
		tr = append(tr, w, g, be)
		if relu {
			y = b.node("Relu", []string{y})
		}
		return y
	}
	x := b.input("input", 2, 3, 12, 12)
	x = convBN(x, 3, 8, 3, 2, 1, true)
	x = b.node("MaxPool", []string{x}, attrInts("kernel_shape", 3, 3), attrInts("strides", 2, 2), attrInts("pads", 1, 1, 1, 1))
	var halves []string
	if opset >= 13 {
		halves = b.multiNode("Split", []string{x, b.initI([]int64{4, 4}, 2)}, 2, attrInt("axis", 1))
	} else {
		halves = b.multiNode("Split", []string{x}, 2, attrInt("axis", 1), attrInts("split", 4, 4))
	}
	y := convBN(halves[1], 4, 4, 1, 1, 1, true)
	y = convBN(y, 4, 4, 3, 1, 4, false)
	y = convBN(y, 4, 4, 1, 1, 1, true)
	y = b.node("Concat", []string{halves[0], y}, attrInt("axis", 1))
	shape1, shape2 := b.initI([]int64{2, 2, 4, 3, 3}, 5), b.initI([]int64{2, -1, 3, 3}, 4)
	y = b.node("Reshape", []string{y, shape1})
	y = b.node("Transpose", []string{y}, attrInts("perm", 0, 2, 1, 3, 4))
	y = b.node("Reshape", []string{y, shape2})
	y = b.node("ReduceMean", []string{y}, attrInts("axes", 2, 3), attrInt("keepdims", 0))
	fw, fb := b.weight(0.5, 5, 8), b.weight(0.1, 5)
	b.output(b.node("Gemm", []string{y, fw, fb}, attrInt("transB", 1)))
	return b.model(), append(tr, fw, fb)
}

func TestBackwardShuffleNetGraph(t *testing.T) {
	for _, opset := range []int64{9, 13} {
		t.Run(fmt.Sprintf("opset %d", opset), func(t *testing.T) {
			m, tr := shuffleGraph(opset)
			res := gradCheck(t, m, nil, tr, 4, true)
			worst := 0.0
			for _, r := range res {
				worst = max(worst, r.relNorm, r.rel)
			}
			t.Logf("%d tensors, worst relative error %.1e", len(res), worst)
		})
	}
}

// TestBackwardFixtures checks the gradients of the exported fixtures
// (testdata/models/*.onnx, every float initializer trainable, and the
// input) on sampled elements: in each tensor the element with the largest
// gradient and two random ones, against the closest of central and
// one-sided finite differences with steps 1e-4, 1e-3 and 1e-2 (the loss
// is piecewise linear along each coordinate), relative to the larger of
// |fd| and the tensor's RMS gradient.
func TestBackwardFixtures(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "models", "*.onnx"))
	if len(paths) == 0 {
		testutil.Skip(t, "no fixtures in testdata/models")
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			m, err := onnxio.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			fixtureGradCheck(t, m, 2e-2)
		})
	}
}

func fixtureGradCheck(t *testing.T, m *onnxpb.ModelProto, tol float64) {
	// BN statistics stay constant: fine-tuning does not train them, and
	// 1/sqrt(var+eps) is far from linear over a step when var is tiny
	stats := map[string]bool{}
	for _, n := range m.Graph.Node {
		if n.OpType == "BatchNormalization" && len(n.Input) == 5 {
			stats[n.Input[3]], stats[n.Input[4]] = true, true
		}
	}
	var tr []string
	for _, init := range m.Graph.Initializer {
		if init.DataType == int32(onnxpb.TensorProto_FLOAT) && !stats[init.Name] {
			tr = append(tr, init.Name)
		}
	}
	p := mustCompile(t, m, Options{Threads: 2, Trainable: tr, KeepForBackward: true})
	name := p.InputNames()[0]
	// batch 2 where the batch dimension is free (an opset-9 export may
	// fix it at 1)
	shape := append([]int{2}, p.InputShape(name)[1:]...)
	if p2, err := Compile(m, Options{Threads: 2, Trainable: tr, KeepForBackward: true, InputShapes: map[string][]int{name: shape}}); err == nil {
		t.Cleanup(p2.Close)
		p = p2
	} else {
		shape = p.InputShape(name)
	}
	rng := rand.New(rand.NewPCG(21, 22))
	in := map[string]*Tensor{name: randTensor(rng, shape...)}
	if err := p.RequireInputGrad(name); err != nil {
		t.Fatal(err)
	}
	r := map[string]*Tensor{}
	for _, o := range p.OutputNames() {
		r[o] = randTensor(rng, p.Shape(o)...)
	}
	bwLoss(t, p, in, r)
	if err := p.Backward(r); err != nil {
		t.Fatal(err)
	}
	names := append([]string{name}, p.ParamNames()...)
	sort.Strings(names[1:])
	l0 := bwLoss(t, p, in, r)
	// float32 rounding bounds what a difference quotient can resolve:
	// each evaluation of the loss is off by a multiple of Σ|out·R|·2⁻²⁴
	// (the multiple grows with depth; 100 covers these networks), and
	// smaller gradients are not checked
	var mag float64
	for o, rt := range r {
		for i, v := range p.Value(o).F {
			mag += math.Abs(float64(v) * float64(rt.F[i]))
		}
	}
	floor := 100 * mag * 0x1p-24 / fdEpsPiecewise
	checked, sampled, worst := 0, 0, 0.0
	for _, n := range names {
		data := in[name].F
		if n != name {
			data = p.Param(n).F
		}
		g := append([]float32(nil), p.Grad(n)...)
		var ss float64
		top := 0
		for i, v := range g {
			ss += float64(v) * float64(v)
			if math.Abs(float64(v)) > math.Abs(float64(g[top])) {
				top = i
			}
		}
		rms := math.Sqrt(ss / float64(len(g)))
		if rms == 0 {
			continue // e.g. a BN variance whose channel is dead after Relu
		}
		for _, i := range []int{top, rng.IntN(len(g)), rng.IntN(len(g))} {
			v := data[i]
			at := func(x float32) float64 {
				data[i] = x
				l := bwLoss(t, p, in, r)
				data[i] = v
				return l
			}
			best := math.Inf(1)
			var bestFD float64
			// small steps for tensors that move many activations
			// across Relu kinks at once (biases of early layers), large
			// ones for tiny gradients
			for _, eps := range []float32{1e-4, fdEps, fdEpsPiecewise} {
				hp, hm := float64(v+eps)-float64(v), float64(v)-float64(v-eps)
				lp, lm := at(v+eps), at(v-eps)
				for _, d := range []float64{(lp - lm) / (hp + hm), (lp - l0) / hp, (l0 - lm) / hm} {
					if e := math.Abs(d - float64(g[i])); e < best {
						best, bestFD = e, d
					}
				}
			}
			sampled++
			if max(math.Abs(bestFD), math.Abs(float64(g[i]))) < floor {
				continue // below what finite differences resolve
			}
			rel := best / max(math.Abs(bestFD), rms)
			worst = max(worst, rel)
			checked++
			if rel > tol {
				t.Errorf("%s[%d]: gradient %v, finite difference %v (relative error %.1e, tensor RMS gradient %.2e)", n, i, g[i], bestFD, rel, rms)
			}
		}
	}
	t.Logf("%d of %d sampled elements of %d tensors above the resolution %.1e checked, worst relative error %.1e", checked, sampled, len(names), floor, worst)
	if checked < 20 {
		t.Errorf("only %d of %d sampled gradients are above the finite-difference resolution %.1e", checked, sampled, floor)
	}
}

// TestBackwardThreadsAgree compares the gradients of a MobileNetV1 step
// computed on 1 and on 3 threads.
func TestBackwardThreadsAgree(t *testing.T) {
	m := mobileNetV1(0.25, 32, 10)
	var tr []string
	for _, init := range m.Graph.Initializer {
		tr = append(tr, init.Name)
	}
	rng := rand.New(rand.NewPCG(31, 32))
	in := map[string]*Tensor{"input": randTensor(rng, 4, 3, 32, 32)}
	seed := randTensor(rng, 4, 10)
	grads := func(threads int) map[string][]float32 {
		p := mustCompile(t, m, Options{Threads: threads, Trainable: tr, KeepForBackward: true, InputShapes: map[string][]int{"input": {4, 3, 32, 32}}})
		if err := p.RequireInputGrad("input"); err != nil {
			t.Fatal(err)
		}
		if err := p.Forward(in); err != nil {
			t.Fatal(err)
		}
		if err := p.Backward(map[string]*Tensor{p.OutputNames()[0]: seed}); err != nil {
			t.Fatal(err)
		}
		g := map[string][]float32{}
		for _, n := range append(tr, "input") {
			g[n] = append([]float32(nil), p.Grad(n)...)
		}
		return g
	}
	g1, g3 := grads(1), grads(3)
	for n, a := range g1 {
		var num, den float64
		for i, v := range a {
			d := float64(v - g3[n][i])
			num += d * d
			den += float64(v) * float64(v)
		}
		if math.Sqrt(num) > 1e-5*math.Sqrt(den) {
			t.Errorf("%s: 1 and 3 threads differ by %.2e relative", n, math.Sqrt(num/den))
		}
	}
}

// TestConvBackwardChunkedBatch checks a general convolution large enough
// that its weight gradient is computed in chunks of images: the batch's
// gradients must be the sums (weights) and the concatenation (input) of
// the per-image ones.
func TestConvBackwardChunkedBatch(t *testing.T) {
	const n, c, m, hw = 3, 16, 4, 128
	if c*9*hw*hw*2 <= maxColFloats {
		t.Fatalf("geometry too small to need chunks")
	}
	build := func(batch int) (*onnxpb.ModelProto, string, string) {
		b := newGraph(13)
		x := b.input("x", batch, c, hw, hw)
		w, bias := b.weight(0.2, m, c, 3, 3), b.weight(0.2, m)
		b.output(b.node("Conv", []string{x, w, bias}, attrInts("pads", 1, 1, 1, 1)))
		return b.model(), w, bias
	}
	rng := rand.New(rand.NewPCG(41, 42))
	x := randTensor(rng, n, c, hw, hw)
	seed := randTensor(rng, n, m, hw, hw)
	grads := func(batch, img int) (dx, dw, db []float32) {
		mdl, w, bias := build(batch)
		p := mustCompile(t, mdl, Options{Threads: 2, Trainable: []string{w, bias}, KeepForBackward: true})
		if err := p.RequireInputGrad("x"); err != nil {
			t.Fatal(err)
		}
		xs, ss := x, seed
		if batch == 1 {
			xs = NewTensorF(x.F[img*c*hw*hw:(img+1)*c*hw*hw], 1, c, hw, hw)
			ss = NewTensorF(seed.F[img*m*hw*hw:(img+1)*m*hw*hw], 1, m, hw, hw)
		}
		if err := p.Forward(map[string]*Tensor{"x": xs}); err != nil {
			t.Fatal(err)
		}
		if err := p.Backward(map[string]*Tensor{p.OutputNames()[0]: ss}); err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), p.Grad("x")...), append([]float32(nil), p.Grad(w)...), append([]float32(nil), p.Grad(bias)...)
	}
	dx, dw, db := grads(n, 0)
	sw, sb := make([]float64, len(dw)), make([]float64, len(db))
	for img := 0; img < n; img++ {
		ix, iw, ib := grads(1, img)
		for i, v := range ix {
			if d := math.Abs(float64(v - dx[img*len(ix)+i])); d > 1e-5*(1+math.Abs(float64(v))) {
				t.Fatalf("image %d: dX[%d] = %v in the batch, %v alone", img, i, dx[img*len(ix)+i], v)
			}
		}
		for i, v := range iw {
			sw[i] += float64(v)
		}
		for i, v := range ib {
			sb[i] += float64(v)
		}
	}
	for i, v := range dw {
		if d := math.Abs(float64(v) - sw[i]); d > 1e-4*(1+math.Abs(sw[i])) {
			t.Fatalf("dW[%d] = %v for the batch, per-image sum %v", i, v, sw[i])
		}
	}
	for i, v := range db {
		if d := math.Abs(float64(v) - sb[i]); d > 1e-4*(1+math.Abs(sb[i])) {
			t.Fatalf("dB[%d] = %v for the batch, per-image sum %v", i, v, sb[i])
		}
	}
}
