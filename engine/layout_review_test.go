package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// pw adds a 1x1 Conv from cin to cout channels (group g), with a bias when
// bias is set.
func (b *graphBuilder) pw(x string, cin, cout, g int, bias bool) string {
	in := []string{x, b.weight(float32(1/math.Sqrt(float64(cin/g))), cout, cin/g, 1, 1)}
	if bias {
		in = append(in, b.weight(0.1, cout))
	}
	return b.node("Conv", in, attrInt("group", int64(g)))
}

// dw adds a depthwise Conv (group c, multiplier mult: c*mult outputs) with
// a k x k filter, the given strides, pads and dilation, and a bias.
func (b *graphBuilder) dw(x string, c, mult, k, stride, dil int, pads [4]int64) string {
	w := b.weight(float32(1/float64(k)), c*mult, 1, k, k)
	return b.node("Conv", []string{x, w, b.weight(0.1, c*mult)}, attrInt("group", int64(c)),
		attrInts("kernel_shape", int64(k), int64(k)), attrInts("strides", int64(stride), int64(stride)),
		attrInts("dilations", int64(dil), int64(dil)), attrInts("pads", pads[:]...))
}

// reviewGraph is a small graph built to attack the channel-major layout
// pass: input [-1, c, h, w], the nodes of build, and its outputs; extra
// names intermediate values read as Options.Outputs.
type reviewGraph struct {
	name    string
	c, h, w int // h 0: 1-D
	build   func(b *graphBuilder, x string) (outs, extra []string)
	cn      bool // the layouts must be used at batch > 1
}

var p1, p2 = [4]int64{1, 1, 1, 1}, [4]int64{2, 2, 2, 2}

func reviewGraphs() []reviewGraph {
	return []reviewGraph{
		{name: "chain pw-dw-pw-dw(s2 asym)-pw", c: 6, h: 4, w: 4, cn: true, build: func(b *graphBuilder, x string) ([]string, []string) {
			y := b.node("Relu", []string{b.pw(x, 6, 16, 1, true)})
			y = b.node("Relu", []string{b.dw(y, 16, 1, 3, 1, 1, p1)})
			y = b.pw(y, 16, 12, 1, false)
			y = b.node("Clip", []string{b.dw(y, 12, 1, 3, 2, 1, [4]int64{0, 1, 1, 0}), b.initF([]float32{0}), b.initF([]float32{6})})
			y = b.pw(y, 12, 8, 1, true)
			return []string{b.node("GlobalAveragePool", []string{y})}, nil
		}},
		{name: "non-square planes, 5x5 and dilated dw", c: 5, h: 4, w: 3, cn: true, build: func(b *graphBuilder, x string) ([]string, []string) {
			y := b.pw(x, 5, 9, 1, true)
			y = b.dw(y, 9, 1, 5, 1, 1, [4]int64{2, 1, 2, 3})
			y = b.pw(y, 9, 7, 1, true)
			y = b.dw(y, 7, 1, 3, 1, 2, [4]int64{2, 2, 1, 2})
			y = b.pw(y, 7, 4, 1, false)
			return []string{y}, nil
		}},
		{name: "pw output is graph output and dw input", c: 4, h: 4, w: 4, build: func(b *graphBuilder, x string) ([]string, []string) {
			a := b.pw(x, 4, 8, 1, true)
			y := b.dw(a, 8, 1, 3, 1, 1, p1)
			y = b.pw(y, 8, 8, 1, true)
			return []string{y, a}, nil
		}},
		{name: "observed intermediates (5x5 dw)", c: 4, h: 3, w: 3, cn: true, build: func(b *graphBuilder, x string) ([]string, []string) {
			a := b.pw(x, 4, 8, 1, true)
			d := b.node("Relu", []string{b.dw(a, 8, 1, 5, 1, 1, p2)})
			e := b.pw(d, 8, 8, 1, true)
			f := b.dw(e, 8, 1, 5, 1, 1, p2)
			y := b.pw(f, 8, 3, 1, true)
			return []string{y}, []string{a, d, f}
		}},
		{name: "two readers of different kinds (5x5 dw)", c: 4, h: 4, w: 4, cn: true, build: func(b *graphBuilder, x string) ([]string, []string) {
			a := b.pw(x, 4, 8, 1, true)
			d := b.dw(a, 8, 1, 5, 1, 1, p2)
			s := b.node("Sigmoid", []string{a})
			y := b.node("Mul", []string{b.pw(d, 8, 8, 1, true), s})
			e := b.pw(y, 8, 8, 1, false)
			f := b.dw(e, 8, 1, 5, 2, 1, p2)
			g := b.node("MaxPool", []string{e}, attrInts("kernel_shape", 2, 2), attrInts("strides", 2, 2))
			return []string{b.node("Add", []string{b.pw(f, 8, 8, 1, true), g})}, nil
		}},
		{name: "input and residual of one conv", c: 8, h: 4, w: 4, cn: true, build: func(b *graphBuilder, x string) ([]string, []string) {
			a := b.pw(x, 8, 8, 1, true)
			y := b.node("Add", []string{b.pw(a, 8, 8, 1, true), a})
			y = b.node("Relu", []string{y})
			z := b.node("Add", []string{b.dw(y, 8, 1, 3, 1, 1, p1), y})
			z = b.node("Add", []string{b.pw(z, 8, 8, 1, false), z})
			return []string{b.pw(z, 8, 5, 1, true)}, nil
		}},
		{name: "Relu Clip Identity between convs", c: 6, h: 2, w: 2, build: func(b *graphBuilder, x string) ([]string, []string) {
			y := b.node("Relu", []string{b.pw(x, 6, 12, 1, true)})
			y = b.node("Identity", []string{y})
			y = b.dw(y, 12, 1, 3, 1, 1, p1)
			y = b.node("Clip", []string{y, b.initF([]float32{-1}), b.initF([]float32{1})})
			y = b.node("Identity", []string{b.pw(y, 12, 12, 1, true)})
			y = b.dw(y, 12, 1, 3, 1, 1, p1)
			return []string{b.node("Relu", []string{b.pw(y, 12, 6, 1, true)})}, nil
		}},
		{name: "group-2 pw, multiplier-2 dw, BatchNorm (5x5 dw)", c: 8, h: 4, w: 4, cn: true, build: func(b *graphBuilder, x string) ([]string, []string) {
			y := b.pw(x, 8, 8, 2, true)
			y = b.dw(y, 8, 1, 5, 1, 1, p2)
			y = b.pw(y, 8, 8, 1, false)
			g, be, mu := b.weight(0.3, 8), b.weight(0.3, 8), b.weight(0.3, 8)
			vr := b.initF(genPositive(b.rng, 8), 8)
			y = b.node("Relu", []string{b.node("BatchNormalization", []string{y, g, be, mu, vr})})
			y = b.dw(y, 8, 2, 5, 1, 1, p2)
			y = b.pw(y, 16, 8, 1, true)
			y = b.dw(y, 8, 1, 5, 1, 1, p2)
			return []string{b.pw(y, 8, 8, 4, true)}, nil
		}},
		{name: "tiny planes: dw output read by pw and pool", c: 4, h: 2, w: 2, build: func(b *graphBuilder, x string) ([]string, []string) {
			a := b.pw(x, 4, 20, 1, true)
			d := b.dw(a, 20, 1, 3, 1, 1, p1)
			e := b.pw(d, 20, 20, 1, true)
			f := b.dw(e, 20, 1, 3, 2, 1, p1) // 2x2 -> 1x1
			g := b.node("GlobalAveragePool", []string{d})
			return []string{b.node("Add", []string{f, g})}, nil
		}},
		{name: "depthwise chains (tiny and 5x5), one dw read by two", c: 6, h: 3, w: 4, cn: true, build: func(b *graphBuilder, x string) ([]string, []string) {
			y := b.pw(x, 6, 10, 1, true)
			y = b.dw(b.dw(y, 10, 1, 3, 1, 1, p1), 10, 1, 3, 1, 1, [4]int64{0, 1, 2, 1})
			y = b.dw(b.dw(y, 10, 1, 5, 1, 1, p2), 10, 1, 5, 1, 1, p2)
			a, c := b.dw(y, 10, 1, 3, 1, 1, p1), b.dw(y, 10, 1, 5, 1, 1, p2)
			return []string{b.pw(a, 10, 4, 1, true), b.pw(c, 10, 4, 1, false)}, nil
		}},
		{name: "1-D convolutions", c: 5, h: 0, w: 12, cn: true, build: func(b *graphBuilder, x string) ([]string, []string) {
			pw1 := func(x string, cin, cout int) string {
				return b.node("Conv", []string{x, b.weight(float32(1/math.Sqrt(float64(cin))), cout, cin, 1), b.weight(0.1, cout)})
			}
			dw1 := func(x string, c, k int, pads ...int64) string {
				return b.node("Conv", []string{x, b.weight(0.4, c, 1, k), b.weight(0.1, c)}, attrInt("group", int64(c)), attrInts("pads", pads...))
			}
			y := pw1(x, 5, 8)
			y = dw1(y, 8, 3, 1, 1)
			y = pw1(y, 8, 8)
			y = dw1(y, 8, 5, 2, 1)
			return []string{pw1(y, 8, 3)}, nil
		}},
		{name: "graph outputs through Identity, Dropout, Reshape, Flatten", c: 4, h: 4, w: 3, cn: true, build: func(b *graphBuilder, x string) ([]string, []string) {
			a := b.pw(x, 4, 8, 1, true)
			d := b.dw(a, 8, 1, 5, 1, 1, p2)
			e := b.pw(d, 8, 8, 1, true)
			f := b.dw(e, 8, 1, 5, 1, 1, p2)
			g := b.pw(f, 8, 8, 1, true)
			h := b.dw(g, 8, 1, 5, 1, 1, p2)
			k := b.pw(h, 8, 8, 1, true)
			return []string{b.node("Identity", []string{a}), b.node("Dropout", []string{d}),
				b.node("Reshape", []string{e, b.initI([]int64{0, -1}, 2)}), b.node("Flatten", []string{f}), k}, nil
		}},
		{name: "LPR modules (identity, diag Mul, diag conv, dw3x3) with BN", c: 8, h: 4, w: 4, cn: true, build: func(b *graphBuilder, x string) ([]string, []string) {
			y := b.node("Relu", []string{b.pw(x, 8, 8, 1, true)})
			for _, kind := range []string{"identity", "diag", "diagconv", "dw3x3", "diag"} {
				z := b.pw(b.pw(y, 8, 3, 1, false), 3, 8, 1, true)
				var r string
				switch kind {
				case "identity":
					r = y
				case "diag":
					r = b.node("Mul", []string{y, b.weight(0.5, 1, 8, 1, 1)})
				case "diagconv":
					r = b.node("Conv", []string{y, b.weight(0.5, 8, 1, 1, 1), b.weight(0.1, 8)}, attrInt("group", 8))
				case "dw3x3":
					r = b.node("Conv", []string{y, b.weight(0.3, 8, 1, 3, 3)}, attrInts("pads", 1, 1, 1, 1), attrInt("group", 8))
				}
				z = b.node("Add", []string{z, r})
				g, be, mu := b.weight(0.3, 8), b.weight(0.3, 8), b.weight(0.3, 8)
				vr := b.initF(genPositive(b.rng, 8), 8)
				z = b.node("BatchNormalization", []string{z, g, be, mu, vr})
				y = b.node("Relu", []string{z})
				y = b.dw(y, 8, 1, 3, 1, 1, p1)
			}
			return []string{b.pw(y, 8, 4, 1, true)}, nil
		}},
	}
}

// model builds g's graph and returns it with the extra output names.
func (g reviewGraph) model() (*onnxpb.ModelProto, []string) {
	b := newGraph(13)
	b.rng = rand.New(rand.NewPCG(11, uint64(len(g.name))))
	shape := []int{-1, g.c, g.h, g.w}
	if g.h == 0 { // 1-D
		shape = []int{-1, g.c, g.w}
	}
	outs, extra := g.build(b, b.input("input", shape...))
	for _, o := range outs {
		b.output(o)
	}
	return b.model(), extra
}

// runReview runs m on x through one Program (workers < 0) or CompileBatched
// and returns every graph output and extra value, and the number of
// convolutions using CNHW, after a first run on NaNs; chunk > 0 bounds the images per GEMM of the
// batched path of one Program.
func runReview(t *testing.T, m *onnxpb.ModelProto, extra []string, x *Tensor, threads, workers, chunk int, trainable, nchw bool) (map[string][]float32, int) {
	t.Helper()
	opts := Options{Threads: threads, InputShapes: map[string][]int{"input": x.Shape}, Outputs: extra, nchwOnly: nchw}
	if trainable {
		for _, w := range m.Graph.Initializer { // the weights of every convolution
			if len(w.Dims) >= 3 {
				opts.Trainable = append(opts.Trainable, w.Name)
			}
		}
	}
	res := map[string][]float32{}
	in := map[string]*Tensor{"input": x}
	// a first run on NaNs leaves them in every buffer: the run on x must
	// not read any of them
	nan := NewTensor(x.Shape...)
	for i := range nan.F {
		nan.F[i] = float32(math.NaN())
	}
	stale := map[string]*Tensor{"input": nan}
	if workers < 0 {
		p, err := Compile(m, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		for _, st := range p.Steps() {
			if op, ok := st.Op.(*ConvOp); ok && op.Chunk > 0 && chunk > 0 {
				op.Chunk = min(op.Chunk, chunk)
			}
		}
		if _, err := p.Run(stale); err != nil {
			t.Fatal(err)
		}
		out, err := p.Run(in)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range out {
			res[k] = append([]float32(nil), v.F...)
		}
		for _, name := range extra {
			res["Value:"+name] = append([]float32(nil), p.Value(name).F...)
		}
		return res, cnValues(p)
	}
	b, err := CompileBatched(m, opts, workers)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Run(stale); err != nil {
		t.Fatal(err)
	}
	out, err := b.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range out {
		res[k] = append([]float32(nil), v.F...)
	}
	for _, name := range extra {
		res["Value:"+name] = append([]float32(nil), b.Value(name).F...)
	}
	cn := 0
	for k := range b.Slices() {
		cn += cnValues(b.Program(k))
	}
	return res, cn
}

// TestChannelMajorReviewGraphs checks, on graphs built to attack the
// layout pass (CNHW candidates that are graph outputs, observed, read by
// ops of other kinds, read as input and residual of one convolution,
// passed through Relu/Clip/Identity, grouped and multiplier-2 convolutions,
// fused BatchNorm, every LPR residual, tiny planes, 5x5, dilated, strided
// and asymmetrically padded depthwise convolutions, non-square planes),
// that every graph output and observed value is bit-identical with the
// layouts on and off, at batches 2 to 65, 1 to 3 threads, in one Program
// and in batch slices (including slices of one image and uneven ones).
func TestChannelMajorReviewGraphs(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, g := range reviewGraphs() {
		m, extra := g.model()
		for _, batch := range []int{2, 3, 5, 17, 65} {
			x := randTensor(rng, batch, g.c, g.h, g.w)
			if g.h == 0 {
				x = randTensor(rng, batch, g.c, g.w)
			}
			for _, threads := range []int{1, 2, 3} {
				for _, run := range [][3]int{{-1, 0, 0}, {-1, 2, 0}, {-1, 3, 0}, {0, 0, 0}, {2, 0, 0}, {3, 0, 0}, {-1, 0, 1}, {2, 0, 1}} {
					workers, chunk, trainable := run[0], run[1], run[2] == 1
					name := fmt.Sprintf("%s/batch%d/threads%d/workers%d/chunk%d/trainable%v", g.name, batch, threads, workers, chunk, trainable)
					want, off := runReview(t, m, extra, x, threads, workers, chunk, trainable, true)
					got, on := runReview(t, m, extra, x, threads, workers, chunk, trainable, false)
					if off != 0 {
						t.Fatalf("%s: %d convolutions use CNHW with the layouts off", name, off)
					}
					if g.cn && workers < 0 && on == 0 {
						t.Errorf("%s: no convolution uses CNHW", name)
					}
					if workers < 0 && threads == 1 && !trainable {
						t.Logf("%s: %d convolutions use CNHW", name, on)
					}
					if len(got) != len(want) {
						t.Fatalf("%s: %d results with CNHW, %d without", name, len(got), len(want))
					}
					for k, w := range want {
						gv := got[k]
						if len(gv) != len(w) {
							t.Fatalf("%s: %s has %d values with CNHW, %d without", name, k, len(gv), len(w))
						}
						for i := range w {
							if math.IsNaN(float64(w[i])) || math.IsInf(float64(w[i]), 0) {
								t.Fatalf("%s: %s[%d] = %g without CNHW (a value of the NaN run left behind)", name, k, i, w[i])
							}
							if math.Float32bits(gv[i]) != math.Float32bits(w[i]) {
								t.Fatalf("%s: %s[%d] = %g with CNHW, %g without", name, k, i, gv[i], w[i])
							}
						}
					}
				}
			}
		}
	}
}

// TestChannelMajorReviewORT compares the review graphs, run with the
// layouts on, with ONNX Runtime at batches 1, 5 and 17.
func TestChannelMajorReviewORT(t *testing.T) {
	testutil.RequireORT(t)
	dir := t.TempDir()
	for i, g := range reviewGraphs() {
		m, _ := g.model()
		path := filepath.Join(dir, fmt.Sprintf("g%d.onnx", i))
		if err := onnxio.Save(path, m, onnxio.SaveOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, batch := range []int{1, 5, 17} {
			for _, threads := range []int{1, 3} {
				t.Run(fmt.Sprintf("%s/batch%d/threads%d", g.name, batch, threads), func(t *testing.T) {
					compareWithORT(t, path, batch, Options{Threads: threads})
				})
			}
		}
	}
}

// TestChannelMajorReviewModel runs the review graphs through Model (one
// program per batch size, as evaluate uses it) at batches 5, 2, 17 and 5
// again, with the layouts on and off, and checks every output bit for bit.
func TestChannelMajorReviewModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, g := range reviewGraphs() {
		m, _ := g.model()
		var mds [2]*Model
		for k, nchw := range []bool{true, false} {
			md, err := NewModel(m, Options{Threads: 2, nchwOnly: nchw})
			if err != nil {
				t.Fatal(err)
			}
			defer md.Close()
			mds[k] = md
		}
		for _, batch := range []int{5, 2, 17, 5} {
			shape := []int{batch, g.c, g.h, g.w}
			if g.h == 0 {
				shape = []int{batch, g.c, g.w}
			}
			in := map[string]*Tensor{"input": randTensor(rng, shape...)}
			want, err := mds[0].Run(in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := mds[1].Run(in)
			if err != nil {
				t.Fatal(err)
			}
			for name, w := range want {
				for i, v := range w.F {
					if math.Float32bits(got[name].F[i]) != math.Float32bits(v) {
						t.Fatalf("%s batch %d: %s[%d] = %g with CNHW, %g without", g.name, batch, name, i, got[name].F[i], v)
					}
				}
			}
		}
	}
}

// TestChannelMajorReviewFixtures runs the fixtures and their LPR rewrites
// with the layouts on and off at the batches and thread counts the
// original test leaves out (5 and 17 images, 3 threads, slices over 2 and
// 3 workers), comparing every bit of the output and of observed values
// (the last six Conv outputs, in the small planes where the layouts apply,
// read as fine-tuning reads intermediate values).
func TestChannelMajorReviewFixtures(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	for _, file := range []string{"mobilenetv1.onnx", "shufflenetv2.onnx"} {
		for _, res := range append([]string{""}, lprResiduals...) {
			m := lprFixture(t, file, res)
			var extra []string
			nodes := m.Graph.Node
			for i := len(nodes) - 1; i >= 0 && len(extra) < 6; i-- {
				if n := nodes[i]; n.OpType == "Conv" && len(n.Output) == 1 {
					extra = append(extra, n.Output[0])
				}
			}
			for _, batch := range []int{5, 17} {
				x := randTensor(rng, batch, 3, 32, 32)
				for _, run := range [][2]int{{3, -1}, {1, 2}, {3, 3}} {
					threads, workers := run[0], run[1]
					name := fmt.Sprintf("%s/%s/batch%d/threads%d/workers%d", file, res, batch, threads, workers)
					want, _ := runReview(t, m, extra, x, threads, workers, 0, false, true)
					got, on := runReview(t, m, extra, x, threads, workers, 0, false, false)
					if workers < 0 && on == 0 {
						t.Errorf("%s: no convolution uses CNHW", name)
					}
					for k, w := range want {
						for i := range w {
							if math.Float32bits(got[k][i]) != math.Float32bits(w[i]) {
								t.Fatalf("%s: %s[%d] = %g with CNHW, %g without", name, k, i, got[k][i], w[i])
							}
						}
					}
				}
			}
		}
	}
}
