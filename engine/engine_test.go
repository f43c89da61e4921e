package engine

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

func mustCompile(t testing.TB, m *onnxpb.ModelProto, opts Options) *Program {
	t.Helper()
	p, err := Compile(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestUnsupportedOpIsCompileError(t *testing.T) {
	b := newGraph(13)
	x := b.input("x", 1, 4)
	y := b.node("Relu", []string{x})
	z := b.node("Erf", []string{y})
	b.output(z)
	_, err := Compile(b.model(), Options{})
	if err == nil || !strings.Contains(err.Error(), "Erf") || !strings.Contains(err.Error(), "node 1") || !strings.Contains(err.Error(), `"n2"`) {
		t.Fatalf("error %v does not name op Erf, index 1 and node n2", err)
	}
	// an unsupported attribute is rejected too
	b = newGraph(13)
	x = b.input("x", 1, 4)
	b.output(b.node("Relu", []string{x}, attrInt("bogus", 1)))
	if _, err := Compile(b.model(), Options{}); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("unsupported attribute: error %v", err)
	}
}

// TestConstantFoldingShapeChain checks that the exporter pattern
// Shape→Gather→Unsqueeze→Concat→Reshape folds to a constant shape.
func TestConstantFoldingShapeChain(t *testing.T) {
	b := newGraph(13)
	x := b.input("x", 2, 3, 4)
	s := b.node("Shape", []string{x})
	n := b.node("Gather", []string{s, b.initI([]int64{0})}, attrInt("axis", 0))
	u := b.node("Unsqueeze", []string{n, b.initI([]int64{0}, 1)})
	shape := b.node("Concat", []string{u, b.initI([]int64{-1}, 1)}, attrInt("axis", 0))
	r := b.node("Reshape", []string{x, shape})
	y := b.node("Relu", []string{r})
	b.output(y)
	p := mustCompile(t, b.model(), Options{})
	if len(p.Steps()) != 2 {
		t.Fatalf("%d steps after folding, want 2 (Reshape, Relu)", len(p.Steps()))
	}
	if got := p.Shape(y); !slices.Equal(got, []int{2, 12}) {
		t.Fatalf("shape %v, want [2 12]", got)
	}
	in := randTensor(rand.New(rand.NewPCG(3, 4)), 2, 3, 4)
	out, err := p.Run(map[string]*Tensor{"x": in})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range in.F {
		if out[y].F[i] != max(v, 0) {
			t.Fatalf("element %d = %v, want %v", i, out[y].F[i], max(v, 0))
		}
	}
}

func reluChain(n int) (*onnxpb.ModelProto, []string) {
	b := newGraph(13)
	x := b.input("x", 1, 1000)
	var names []string
	for i := 0; i < n; i++ {
		x = b.node("Relu", []string{x})
		names = append(names, x)
	}
	b.output(x)
	return b.model(), names
}

func TestBufferReuse(t *testing.T) {
	m, names := reluChain(10)
	p := mustCompile(t, m, Options{})
	if got := p.PeakActivationBytes(); got != 2*4000 {
		t.Fatalf("peak %d bytes, want %d (two live buffers)", got, 2*4000)
	}
	k := mustCompile(t, m, Options{KeepForBackward: true})
	if got := k.PeakActivationBytes(); got != 11*4000 {
		t.Fatalf("KeepForBackward peak %d bytes, want %d", got, 11*4000)
	}
	in := randTensor(rand.New(rand.NewPCG(1, 1)), 1, 1000)
	if err := k.Forward(map[string]*Tensor{"x": in}); err != nil {
		t.Fatal(err)
	}
	for _, st := range k.Steps() {
		for i, v := range st.In[0].F {
			if st.Out[0].F[i] != max(v, 0) {
				t.Fatalf("tape: step %d element %d: in %v out %v", st.Index, i, v, st.Out[0].F[i])
			}
		}
	}
	// an observed intermediate survives reuse
	o := mustCompile(t, m, Options{Outputs: []string{names[2]}})
	res, err := o.Run(map[string]*Tensor{"x": in})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range in.F {
		if res[names[2]].F[i] != max(v, 0) {
			t.Fatalf("observed value element %d wrong", i)
		}
	}
}

func TestTrainableParamsNotFolded(t *testing.T) {
	b := newGraph(13)
	x := b.input("x", 1, 3)
	w := b.initF([]float32{1, 2, 3}, 3)
	w2 := b.node("Mul", []string{w, b.initF([]float32{2}, 1)}) // folds unless w is trainable
	y := b.node("Add", []string{x, w2})
	b.output(y)
	m := b.model()
	if p := mustCompile(t, m, Options{}); len(p.Steps()) != 1 {
		t.Fatalf("constant Mul not folded: %d steps", len(p.Steps()))
	}
	p := mustCompile(t, m, Options{Trainable: []string{w}})
	if len(p.Steps()) != 2 {
		t.Fatalf("trainable Mul folded: %d steps", len(p.Steps()))
	}
	copy(p.Param(w).F, []float32{10, 20, 30})
	out, err := p.Run(map[string]*Tensor{"x": NewTensorF([]float32{1, 1, 1}, 1, 3)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{21, 41, 61}; !slices.Equal(out[y].F, want) {
		t.Fatalf("got %v, want %v", out[y].F, want)
	}
	if _, err := Compile(m, Options{Trainable: []string{"nope"}}); err == nil {
		t.Fatal("unknown trainable name accepted")
	}
}

func TestCast(t *testing.T) {
	cases := []struct {
		to   onnxpb.TensorProto_DataType
		in   *Tensor
		want *Tensor
	}{
		{onnxpb.TensorProto_INT64, NewTensorF([]float32{-2.7, -0.5, 0, 1.9, 3e9}, 5), NewTensorI([]int64{-2, 0, 0, 1, 3000000000}, 5)},
		{onnxpb.TensorProto_FLOAT, NewTensorI([]int64{-3, 0, 7}, 3), NewTensorF([]float32{-3, 0, 7}, 3)},
		{onnxpb.TensorProto_BOOL, NewTensorF([]float32{0, -1, 0.5}, 3), &Tensor{Shape: []int{3}, DType: Bool, I: []int64{0, 1, 1}}},
		{onnxpb.TensorProto_INT32, NewTensorI([]int64{1 << 33, -5}, 2), &Tensor{Shape: []int{2}, DType: Int32, I: []int64{0, -5}}},
	}
	for _, c := range cases {
		b := newGraph(13)
		dt := onnxpb.TensorProto_FLOAT
		if !c.in.DType.IsFloat() {
			dt = onnxpb.TensorProto_INT64
		}
		b.g.Input = append(b.g.Input, valueInfo("x", dt, c.in.Shape))
		y := b.node("Cast", []string{"x"}, attrInt("to", int64(c.to)))
		b.output(y)
		p := mustCompile(t, b.model(), Options{})
		out, err := p.Run(map[string]*Tensor{"x": c.in})
		if err != nil {
			t.Fatal(err)
		}
		if msg := compareTensors(out[y], c.want, 0, 0); msg != "" || out[y].DType != c.want.DType {
			t.Errorf("Cast to %s of %v: %s (got %v %v)", c.to, c.in, msg, out[y].DType, out[y])
		}
	}
}

// refConv is a direct NCHW convolution used as the reference for every
// convolution path (pointwise GEMM, depthwise kernel, im2col + GEMM).
func refConv(x, w, bias []float32, n, c, h, wd, m, kh, kw, group int, s, d [2]int, pads [4]int, oh, ow int) []float32 {
	y := make([]float32, n*m*oh*ow)
	cg, mg := c/group, m/group
	for i := 0; i < n; i++ {
		for o := 0; o < m; o++ {
			g := o / mg
			for oy := 0; oy < oh; oy++ {
				for ox := 0; ox < ow; ox++ {
					var acc float64
					if bias != nil {
						acc = float64(bias[o])
					}
					for ci := 0; ci < cg; ci++ {
						for ky := 0; ky < kh; ky++ {
							iy := oy*s[0] - pads[0] + ky*d[0]
							if iy < 0 || iy >= h {
								continue
							}
							for kx := 0; kx < kw; kx++ {
								ix := ox*s[1] - pads[1] + kx*d[1]
								if ix < 0 || ix >= wd {
									continue
								}
								acc += float64(x[((i*c+g*cg+ci)*h+iy)*wd+ix]) * float64(w[((o*cg+ci)*kh+ky)*kw+kx])
							}
						}
					}
					y[((i*m+o)*oh+oy)*ow+ox] = float32(acc)
				}
			}
		}
	}
	return y
}

func TestConvPathsMatchDirect(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	cases := []struct {
		name                  string
		n, c, h, w, m, k, grp int
		s, d                  [2]int
		pads                  [4]int
		bias                  bool
	}{
		{"pointwise", 2, 16, 7, 9, 24, 1, 1, [2]int{1, 1}, [2]int{1, 1}, [4]int{}, true},
		{"pointwise grouped", 2, 16, 5, 5, 8, 1, 4, [2]int{1, 1}, [2]int{1, 1}, [4]int{}, false},
		{"pointwise strided", 1, 8, 9, 9, 8, 1, 1, [2]int{2, 2}, [2]int{1, 1}, [4]int{}, true},
		{"depthwise 3x3", 3, 12, 10, 11, 12, 3, 12, [2]int{1, 1}, [2]int{1, 1}, [4]int{1, 1, 1, 1}, true},
		{"depthwise strided", 2, 8, 13, 12, 8, 3, 8, [2]int{2, 2}, [2]int{1, 1}, [4]int{1, 1, 1, 1}, false},
		{"depthwise 5x5 asym", 1, 4, 9, 9, 4, 5, 4, [2]int{2, 1}, [2]int{1, 1}, [4]int{0, 2, 3, 1}, true},
		{"depth multiplier", 2, 4, 6, 6, 8, 3, 4, [2]int{1, 1}, [2]int{1, 1}, [4]int{1, 1, 1, 1}, true},
		{"general", 2, 3, 15, 14, 16, 3, 1, [2]int{2, 2}, [2]int{1, 1}, [4]int{1, 1, 1, 1}, true},
		{"general dilated", 1, 6, 12, 12, 4, 3, 2, [2]int{1, 1}, [2]int{2, 3}, [4]int{2, 1, 0, 3}, true},
		{"pointwise 1x1 plane", 3, 32, 1, 1, 16, 1, 1, [2]int{1, 1}, [2]int{1, 1}, [4]int{}, true},
		{"depthwise tiny plane", 4, 16, 4, 4, 16, 3, 16, [2]int{2, 2}, [2]int{1, 1}, [4]int{1, 1, 1, 1}, true},
		{"general batch 5", 5, 8, 12, 12, 16, 3, 1, [2]int{1, 1}, [2]int{1, 1}, [4]int{1, 1, 1, 1}, true},
		{"general 7x7", 1, 3, 20, 20, 8, 7, 1, [2]int{2, 2}, [2]int{1, 1}, [4]int{3, 3, 3, 3}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newGraph(13)
			x := b.input("x", c.n, c.c, c.h, c.w)
			w := b.weight(1, c.m, c.c/c.grp, c.k, c.k)
			ins := []string{x, w}
			if c.bias {
				ins = append(ins, b.weight(1, c.m))
			}
			y := b.node("Conv", ins, attrInt("group", int64(c.grp)), attrInts("strides", int64(c.s[0]), int64(c.s[1])),
				attrInts("dilations", int64(c.d[0]), int64(c.d[1])), attrInts("pads", int64(c.pads[0]), int64(c.pads[1]), int64(c.pads[2]), int64(c.pads[3])))
			b.output(y)
			m := b.model()
			for _, v := range []struct{ threads, chunk int }{{1, 0}, {2, 0}, {2, 2}} {
				p := mustCompile(t, m, Options{Threads: v.threads})
				if op := p.Steps()[0].Op.(*ConvOp); v.chunk > 0 {
					if op.Chunk == 0 {
						continue // not a batched-path convolution
					}
					op.Chunk = v.chunk // several chunks, the last one short
				}
				in := randTensor(rng, c.n, c.c, c.h, c.w)
				out, err := p.Run(map[string]*Tensor{"x": in})
				if err != nil {
					t.Fatal(err)
				}
				shape := out[y].Shape
				wt := p.Value(w).F
				var bias []float32
				if c.bias {
					bias = p.Value(ins[2]).F
				}
				want := refConv(in.F, wt, bias, c.n, c.c, c.h, c.w, c.m, c.k, c.k, c.grp, c.s, c.d, c.pads, shape[2], shape[3])
				var scale float64
				for _, v := range want {
					scale = max(scale, math.Abs(float64(v)))
				}
				if msg := compareTensors(out[y], NewTensorF(want, shape...), 1e-5, 1e-6*scale); msg != "" {
					t.Fatalf("threads %d chunk %d: %s", v.threads, v.chunk, msg)
				}
			}
		})
	}
}

func TestModelRecompilesPerBatch(t *testing.T) {
	m := mobileNetV1(0.25, 32, 10)
	md, err := NewModel(m, Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	batch := randTensor(rng, 3, 3, 32, 32)
	out3, err := md.Run(map[string]*Tensor{"input": batch})
	if err != nil {
		t.Fatal(err)
	}
	name := m.Graph.Output[0].Name
	for i := 0; i < 3; i++ {
		one := NewTensorF(batch.F[i*3*32*32:(i+1)*3*32*32], 1, 3, 32, 32)
		out1, err := md.Run(map[string]*Tensor{"input": one})
		if err != nil {
			t.Fatal(err)
		}
		row := NewTensorF(out3[name].F[i*10:(i+1)*10], 1, 10)
		if msg := compareTensors(out1[name], row, 1e-5, 1e-6); msg != "" {
			t.Fatalf("sample %d of batch 3 differs from batch 1: %s", i, msg)
		}
	}
}

func TestForwardDoesNotAllocate(t *testing.T) {
	m := mobileNetV1(0.25, 32, 10)
	p := mustCompile(t, m, Options{Threads: 2, InputShapes: map[string][]int{"input": {2, 3, 32, 32}}})
	in := map[string]*Tensor{"input": randTensor(rand.New(rand.NewPCG(1, 2)), 2, 3, 32, 32)}
	if err := p.Forward(in); err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(5, func() { _ = p.Forward(in) }); allocs != 0 {
		t.Fatalf("Forward allocates %v times per run", allocs)
	}
}

func TestRunErrors(t *testing.T) {
	m, _ := reluChain(2)
	p := mustCompile(t, m, Options{})
	if _, err := p.Run(map[string]*Tensor{}); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Fatalf("missing input: %v", err)
	}
	if _, err := p.Run(map[string]*Tensor{"x": NewTensor(1, 999)}); err == nil || !strings.Contains(err.Error(), "shape") {
		t.Fatalf("wrong shape: %v", err)
	}
	// an out-of-range run-time Gather index is an error, not a panic
	b := newGraph(13)
	b.g.Input = append(b.g.Input, valueInfo("idx", onnxpb.TensorProto_INT64, []int{2}))
	y := b.node("Gather", []string{b.initF([]float32{1, 2, 3}, 3), "idx"})
	b.output(y)
	g := mustCompile(t, b.model(), Options{})
	if _, err := g.Run(map[string]*Tensor{"idx": NewTensorI([]int64{0, 3}, 2)}); err == nil {
		t.Fatal("out-of-range index accepted")
	}
	out, err := g.Run(map[string]*Tensor{"idx": NewTensorI([]int64{-1, 0}, 2)})
	if err != nil || !slices.Equal(out[y].F, []float32{3, 1}) {
		t.Fatalf("negative index: %v %v", out, err)
	}
}

func TestDynamicDimsNeedShapes(t *testing.T) {
	b := newGraph(13)
	b.input("x", -1, -1)
	b.output(b.node("Relu", []string{"x"}))
	if _, err := Compile(b.model(), Options{}); err == nil {
		t.Fatal("dynamic non-batch dim accepted without InputShapes")
	}
	p := mustCompile(t, b.model(), Options{InputShapes: map[string][]int{"x": {2, 5}}})
	if !slices.Equal(p.InputShape("x"), []int{2, 5}) {
		t.Fatalf("input shape %v", p.InputShape("x"))
	}
}

// TestConvBNReluFusion checks that folding BatchNormalization into a Conv
// and running Relu inside it gives the unfused result.
func TestConvBNReluFusion(t *testing.T) {
	b := newGraph(13)
	x := b.input("x", 2, 8, 9, 9)
	w := b.weight(0.3, 16, 8, 3, 3)
	y := b.node("Conv", []string{x, w}, attrInts("pads", 1, 1, 1, 1))
	rng := rand.New(rand.NewPCG(9, 9))
	pos := make([]float32, 16)
	for i := range pos {
		pos[i] = 0.5 + rng.Float32()
	}
	y = b.node("BatchNormalization", []string{y, b.weight(1, 16), b.weight(1, 16), b.weight(1, 16), b.initF(pos, 16)}, attrFloat("epsilon", 1e-3))
	y = b.node("Relu", []string{y})
	y = b.node("Conv", []string{y, b.weight(0.3, 8, 16, 1, 1), b.weight(0.1, 8)})
	y = b.node("Clip", []string{y, b.initF([]float32{0}), b.initF([]float32{6})})
	b.output(y)
	m := b.model()
	fused := mustCompile(t, m, Options{})
	if n := len(fused.Steps()); n != 2 {
		t.Fatalf("%d steps after fusion, want 2", n)
	}
	plain := mustCompile(t, m, Options{Trainable: []string{w}, KeepForBackward: true})
	if n := len(plain.Steps()); n != 5 {
		t.Fatalf("%d steps without fusion, want 5", n)
	}
	in := map[string]*Tensor{"x": randTensor(rng, 2, 8, 9, 9)}
	a, err := fused.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	want, err := plain.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	if msg := compareTensors(a[y], want[y], 1e-5, 1e-6); msg != "" {
		t.Fatal(msg)
	}
}

// TestBroadcastBinary checks Add/Sub/Mul/Div with numpy broadcasting
// against a direct index computation, on float and int64 tensors, with one
// and two threads.
func TestBroadcastBinary(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	shapes := [][2][]int{
		{{4, 5}, {4, 5}},
		{{2, 3, 4, 5}, {1, 3, 1, 1}},
		{{2, 3, 4, 5}, {5}},
		{{3, 1, 5}, {1, 4, 1}},
		{{1}, {2, 3}},
		{{}, {3, 2}},
		{{8, 32, 16, 16}, {8, 32, 1, 1}},
		{{2, 1, 3, 1, 2, 1, 2, 1, 2, 3}, {1, 2, 1, 2, 1, 2, 1, 2, 1, 3}},
		{{0, 3}, {1, 3}},
	}
	ops := []string{"Add", "Sub", "Mul", "Div"}
	for _, sh := range shapes {
		for _, opName := range ops {
			for _, isInt := range []bool{false, true} {
				b := newGraph(13)
				dt := onnxpb.TensorProto_FLOAT
				if isInt {
					dt = onnxpb.TensorProto_INT64
				}
				b.g.Input = append(b.g.Input, valueInfo("a", dt, sh[0]), valueInfo("b", dt, sh[1]))
				y := b.node(opName, []string{"a", "b"})
				b.output(y)
				mk := func(shape []int) *Tensor {
					t := randTensor(rng, shape...)
					if isInt {
						t = &Tensor{Shape: t.Shape, DType: Int64, I: make([]int64, len(t.F))}
						for i := range t.I {
							t.I[i] = rng.Int64N(19) - 9
							if t.I[i] == 0 {
								t.I[i] = 3
							}
						}
					}
					return t
				}
				a, bb := mk(sh[0]), mk(sh[1])
				out, _ := broadcastShape(sh[0], sh[1])
				want := &Tensor{Shape: out, DType: a.DType}
				n := sizeOf(out)
				if isInt {
					want.I = make([]int64, n)
				} else {
					want.F = make([]float32, n)
				}
				sa, sb := bcastStrides(sh[0], out), bcastStrides(sh[1], out)
				for i := 0; i < n; i++ {
					ia, ib, r := 0, 0, i
					for d := len(out) - 1; d >= 0; d-- {
						k := r % out[d]
						r /= out[d]
						ia += k * sa[d]
						ib += k * sb[d]
					}
					if isInt {
						x, z := a.I[ia], bb.I[ib]
						want.I[i] = arith(opName, x, z)
					} else {
						x, z := a.F[ia], bb.F[ib]
						want.F[i] = arith(opName, x, z)
					}
				}
				for _, threads := range []int{1, 2} {
					p := mustCompile(t, b.model(), Options{Threads: threads})
					got, err := p.Run(map[string]*Tensor{"a": a, "b": bb})
					if err != nil {
						t.Fatal(err)
					}
					if msg := compareTensors(got[y], want, 0, 0); msg != "" {
						t.Fatalf("%s %v %v int=%v threads %d: %s", opName, sh[0], sh[1], isInt, threads, msg)
					}
				}
			}
		}
	}
}

func arith[T float32 | int64](op string, x, z T) T {
	switch op {
	case "Add":
		return x + z
	case "Sub":
		return x - z
	case "Mul":
		return x * z
	}
	return x / z
}

// TestModelCacheEvictionKeepsHeldPrograms: compiling more shapes than the
// cache holds clears it, and a program handed out before (held by a
// caller, or running in another goroutine) must keep running, with the
// same outputs, instead of having been closed under it.
func TestModelCacheEvictionKeepsHeldPrograms(t *testing.T) {
	m := mobileNetV1(0.25, 32, 10)
	md, err := NewModel(m, Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	rng := rand.New(rand.NewPCG(9, 10))
	x := randTensor(rng, 2, 3, 32, 32)
	held, err := md.Batched(map[string][]int{"input": {2, 3, 32, 32}})
	if err != nil {
		t.Fatal(err)
	}
	want, err := held.Run(map[string]*Tensor{"input": x})
	if err != nil {
		t.Fatal(err)
	}
	for n := 3; n < 3+maxCachedPrograms+1; n++ {
		if _, err := md.Run(map[string]*Tensor{"input": randTensor(rng, n, 3, 32, 32)}); err != nil {
			t.Fatalf("batch %d: %v", n, err)
		}
	}
	got, err := held.Run(map[string]*Tensor{"input": x})
	if err != nil {
		t.Fatal(err)
	}
	name := m.Graph.Output[0].Name
	if msg := compareTensors(got[name], want[name], 0, 0); msg != "" {
		t.Fatalf("held program after eviction: %s", msg)
	}
}
