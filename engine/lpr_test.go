package engine

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// lprTolerance is the largest accepted relative max-abs error of a fused
// LPR module against its unfused reference.
const lprTolerance = 1e-5

// relMaxAbs returns max|got-want| / max|want|.
func relMaxAbs(got, want []float32) float64 {
	var d, r float64
	for i, w := range want {
		d = max(d, math.Abs(float64(got[i])-float64(w)))
		r = max(r, math.Abs(float64(w)))
	}
	if math.IsNaN(d) {
		return math.Inf(1)
	}
	return d / max(r, 1e-30)
}

// lprCase is one LPR module: y = act(Conv_B(Conv_A(x)) + b + R(x)).
type lprCase struct {
	name       string
	n, c, h, w int
	r          int
	residual   string // none, identity, diag, dw3
	act        string // "", Relu, Clip
	swap       bool   // Add(R, t) instead of Add(t, R)
	residBias  bool   // the diag or dw3 residual Conv has a bias
	wantSteps  int    // steps after fusion
	observeMid bool   // observe the second conv's output: no Add fusion
}

// build returns the module as a model and a direct reference of its output
// for input x.
func (tc lprCase) build(x *Tensor) (*onnxpb.ModelProto, []float32) {
	b := newGraph(13)
	b.rng = rand.New(rand.NewPCG(uint64(tc.c), uint64(tc.r)))
	in := b.input("x", tc.n, tc.c, tc.h, tc.w)
	wa := b.weight(0.4, tc.r, tc.c, 1, 1)
	wb := b.weight(0.4, tc.c, tc.r, 1, 1)
	bb := b.weight(0.2, tc.c)
	a := b.node("Conv", []string{in, wa})
	t := b.node("Conv", []string{a, wb, bb})
	if tc.observeMid {
		b.g.Output = append(b.g.Output, &onnxpb.ValueInfoProto{Name: t})
	}
	init := func(name string) []float32 {
		for _, it := range b.g.Initializer {
			if it.Name == name {
				t, err := TensorFromProto(it)
				if err != nil {
					panic(err)
				}
				return t.F
			}
		}
		panic(name)
	}
	ra := refConv(x.F, init(wa), nil, tc.n, tc.c, tc.h, tc.w, tc.r, 1, 1, 1, [2]int{1, 1}, [2]int{1, 1}, [4]int{}, tc.h, tc.w)
	ref := refConv(ra, init(wb), init(bb), tc.n, tc.r, tc.h, tc.w, tc.c, 1, 1, 1, [2]int{1, 1}, [2]int{1, 1}, [4]int{}, tc.h, tc.w)
	y := t
	var res string
	var rr []float32
	switch tc.residual {
	case "identity":
		res, rr = in, x.F
	case "diag", "dw3":
		k := 1
		if tc.residual == "dw3" {
			k = 3
		}
		wd := b.weight(0.5, tc.c, 1, k, k)
		ins := []string{in, wd}
		var bias []float32
		if tc.residBias {
			bd := b.weight(0.3, tc.c)
			ins = append(ins, bd)
			bias = init(bd)
		}
		p := int64(k / 2)
		res = b.node("Conv", ins, attrInt("group", int64(tc.c)), attrInts("kernel_shape", int64(k), int64(k)), attrInts("pads", p, p, p, p))
		rr = refConv(x.F, init(wd), bias, tc.n, tc.c, tc.h, tc.w, tc.c, k, k, tc.c, [2]int{1, 1}, [2]int{1, 1}, [4]int{int(p), int(p), int(p), int(p)}, tc.h, tc.w)
	}
	if res != "" {
		ins := []string{t, res}
		if tc.swap {
			ins = []string{res, t}
		}
		y = b.node("Add", ins)
		for i := range ref {
			ref[i] += rr[i]
		}
	}
	switch tc.act {
	case "Relu":
		y = b.node("Relu", []string{y})
		for i, v := range ref {
			ref[i] = max(v, 0)
		}
	case "Clip":
		y = b.node("Clip", []string{y, b.initF([]float32{-0.5}), b.initF([]float32{0.75})})
		for i, v := range ref {
			ref[i] = min(max(v, -0.5), 0.75)
		}
	}
	b.output(y)
	return b.model(), ref
}

// TestLPRModuleFusion checks every fused form of an LPR module (residual
// Add in the second conv's GEMM, diag and depthwise residual absorbed,
// Relu or Clip after the Add) against a direct computation, and against
// the same program compiled without fusion.
func TestLPRModuleFusion(t *testing.T) {
	cases := []lprCase{
		{name: "none", n: 2, c: 8, h: 5, w: 7, r: 3, residual: "none", wantSteps: 2},
		{name: "identity", n: 2, c: 8, h: 5, w: 7, r: 3, residual: "identity", wantSteps: 2},
		{name: "identity swapped relu", n: 3, c: 8, h: 4, w: 4, r: 2, residual: "identity", act: "Relu", swap: true, wantSteps: 2},
		{name: "diag", n: 2, c: 12, h: 6, w: 5, r: 3, residual: "diag", wantSteps: 2},
		{name: "diag relu bias", n: 1, c: 16, h: 3, w: 3, r: 4, residual: "diag", act: "Relu", residBias: true, wantSteps: 2},
		{name: "diag clip 1x1 plane", n: 5, c: 16, h: 1, w: 1, r: 4, residual: "diag", act: "Clip", wantSteps: 2},
		{name: "diag swapped", n: 2, c: 8, h: 9, w: 9, r: 8, residual: "diag", swap: true, wantSteps: 2},
		{name: "dw3", n: 2, c: 8, h: 6, w: 6, r: 2, residual: "dw3", wantSteps: 2},
		{name: "dw3 relu bias swapped", n: 3, c: 12, h: 7, w: 5, r: 3, residual: "dw3", act: "Relu", residBias: true, swap: true, wantSteps: 2},
		{name: "dw3 1x1 plane", n: 4, c: 8, h: 1, w: 1, r: 2, residual: "dw3", act: "Clip", wantSteps: 2},
		{name: "diag batched small plane relu", n: 3, c: 16, h: 2, w: 2, r: 4, residual: "diag", act: "Relu", residBias: true, wantSteps: 2},
		{name: "diag batched 1x3 plane", n: 2, c: 16, h: 1, w: 3, r: 4, residual: "diag", wantSteps: 2},
		{name: "dw3 batched small plane", n: 2, c: 8, h: 2, w: 2, r: 2, residual: "dw3", swap: true, wantSteps: 2},
		{name: "identity batched small plane clip", n: 4, c: 8, h: 2, w: 2, r: 3, residual: "identity", act: "Clip", wantSteps: 2},
		{name: "diag 1x1 plane no act", n: 3, c: 8, h: 1, w: 1, r: 2, residual: "diag", residBias: true, wantSteps: 2},
		{name: "diag observed", n: 2, c: 8, h: 4, w: 4, r: 2, residual: "diag", act: "Relu", observeMid: true, wantSteps: 5},
		{name: "identity observed", n: 2, c: 8, h: 4, w: 4, r: 2, residual: "identity", observeMid: true, wantSteps: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := randTensor(rand.New(rand.NewPCG(3, uint64(tc.n))), tc.n, tc.c, tc.h, tc.w)
			m, ref := tc.build(x)
			out := m.Graph.Output[len(m.Graph.Output)-1].Name
			for _, keep := range []bool{false, true} {
				for _, threads := range []int{1, 2} {
					p := mustCompile(t, m, Options{Threads: threads, KeepForBackward: keep})
					got, err := p.Run(map[string]*Tensor{"x": x})
					p.Close()
					if err != nil {
						t.Fatal(err)
					}
					if e := relMaxAbs(got[out].F, ref); e > lprTolerance {
						t.Errorf("keep %v threads %d: relative max-abs error %.3g > %g", keep, threads, e, lprTolerance)
					}
					if conv, ok := p.Steps()[len(p.Steps())-1].Op.(*ConvOp); !keep && ok && tc.n > 1 && tc.h*tc.w <= pointwiseBatchedPlaneLimit && tc.h*tc.w > 1 && conv.Chunk == 0 {
						t.Errorf("second factor %dx%d on %dx%d planes does not use the batched path", tc.r, tc.c, tc.h, tc.w)
					}
					if !keep && len(p.Steps()) != tc.wantSteps {
						t.Errorf("fused program has %d steps; want %d", len(p.Steps()), tc.wantSteps)
					}
				}
			}
		})
	}
}

// TestLPRFixturesFusedMatchUnfused rewrites the fixtures into LPR models
// with every residual kind and checks the fused program (batch 1 and 4)
// against the unfused one (KeepForBackward).
func TestLPRFixturesFusedMatchUnfused(t *testing.T) {
	for _, file := range []string{"mobilenetv1.onnx", "shufflenetv2.onnx"} {
		for _, res := range lprResiduals {
			t.Run(file+"/"+res, func(t *testing.T) {
				m := lprFixture(t, file, res)
				name := m.Graph.Input[0].Name
				for _, batch := range []int{1, 4} {
					shape := []int{batch, 3, 32, 32}
					x := randTensor(rand.New(rand.NewPCG(7, uint64(batch))), shape...)
					var outs [2]map[string]*Tensor
					var steps [2]int
					for i, keep := range []bool{false, true} {
						p := mustCompile(t, m, Options{InputShapes: map[string][]int{name: shape}, KeepForBackward: keep})
						o, err := p.Run(map[string]*Tensor{name: x})
						steps[i] = len(p.Steps())
						p.Close()
						if err != nil {
							t.Fatal(err)
						}
						outs[i] = o
					}
					for _, o := range m.Graph.Output {
						if e := relMaxAbs(outs[0][o.Name].F, outs[1][o.Name].F); e > lprTolerance {
							t.Errorf("batch %d output %q: fused vs unfused relative max-abs error %.3g > %g", batch, o.Name, e, lprTolerance)
						}
					}
					if res != "none" && steps[0] >= steps[1] {
						t.Errorf("batch %d: fused program has %d steps, unfused %d: nothing fused", batch, steps[0], steps[1])
					}
				}
			})
		}
	}
}

// TestLPRFixturesORT checks the fused programs of the LPR fixtures against
// ONNX Runtime.
func TestLPRFixturesORT(t *testing.T) {
	testutil.RequireORT(t)
	for _, file := range []string{"mobilenetv1.onnx", "shufflenetv2.onnx"} {
		for _, res := range lprResiduals {
			t.Run(file+"/"+res, func(t *testing.T) {
				m := lprFixture(t, file, res)
				path := filepath.Join(t.TempDir(), "lpr.onnx")
				if err := onnxio.Save(path, m, onnxio.SaveOptions{}); err != nil {
					t.Fatal(err)
				}
				for _, batch := range []int{1, 8} {
					compareWithORT(t, path, batch, Options{})
				}
			})
		}
	}
}
