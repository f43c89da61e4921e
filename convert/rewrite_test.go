package convert

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

var allResiduals = []svd.ResidualKind{svd.KindNone, svd.KindIdentity, svd.KindDiag, svd.KindDepthwise(3), svd.KindDepthwise(1)}

// lprNet is a small network with every candidate situation: a candidate
// followed by a foldable BatchNormalization, one with a bias shared
// through Identity nodes (as PyTorch exports deduplicated zeros), one
// without bias whose output is a graph output and is also read by another
// node, and non-candidates around them.
func lprNet(c int64, opset int64) *onnxpb.ModelProto {
	b := newBuilder(11)
	zero := b.floats("zero", []int64{c}, make([]float32, c))
	x := b.op("Conv", []string{"x", b.weight("stem", 0.4, c, 3, 3, 3), b.weight("stemb", 0.1, c)}, aInts("pads", 1, 1, 1, 1))
	x = b.op("Relu", []string{x})
	x = b.op("Conv", []string{x, b.weight("dw", 0.4, c, 1, 3, 3)}, aInt("group", c), aInts("pads", 1, 1, 1, 1))
	x = b.op("Conv", []string{x, b.weight("pw1", 0.3, c, c, 1, 1)})
	x = b.op("BatchNormalization", []string{x, b.weight("g", 0.2, c), b.weight("beta", 0.1, c), b.weight("mu", 0.1, c), b.floats("var", []int64{c}, ones32(c))}, aFloat("epsilon", 1e-3))
	x = b.op("Relu", []string{x})
	x = b.op("Conv", []string{x, b.weight("pw2", 0.3, c, c, 1, 1), b.op("Identity", []string{zero})})
	x = b.op("Clip", []string{x}, aFloat("min", 0), aFloat("max", 6))
	if opset >= 11 {
		x = b.nodes[len(b.nodes)-1].Output[0]
		b.nodes[len(b.nodes)-1].Attribute = nil
		b.nodes[len(b.nodes)-1].Input = append(b.nodes[len(b.nodes)-1].Input, b.floats("lo", nil, []float32{0}), b.floats("hi", nil, []float32{6}))
	}
	x = b.op("Conv", []string{x, b.weight("dw2", 0.4, c, 1, 3, 3), b.op("Identity", []string{zero})}, aInt("group", c), aInts("pads", 1, 1, 1, 1))
	feat := b.op("Conv", []string{x, b.weight("pw3", 0.3, c, c, 1, 1)})
	x = b.op("GlobalAveragePool", []string{feat})
	x = b.op("Flatten", []string{x})
	x = b.op("Gemm", []string{x, b.weight("fc", 0.3, 5, c), b.weight("fcb", 0.1, 5)}, aInt("transB", 1))
	m := b.model(opset, []int64{-1, 3, 6, 6}, x, feat)
	m.MetadataProps = []*onnxpb.StringStringEntryProto{{Key: "origin", Value: "test"}}
	m.DocString = "doc"
	return m
}

func runModel(t *testing.T, path string, x []float32, shape []int64) map[string]ortrun.Tensor {
	t.Helper()
	return runFeed(t, path, map[string]ortrun.Tensor{"x": {Shape: shape, Data: x}})
}

// runFeed runs the model at path in ONNX Runtime on feed.
func runFeed(t *testing.T, path string, feed map[string]ortrun.Tensor) map[string]ortrun.Tensor {
	t.Helper()
	out, err := ortrun.Run(path, feed, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mustApply returns Apply(m, p), failing the test on an error.
func mustApply(t *testing.T, m *onnxpb.ModelProto, p *Plan) *onnxpb.ModelProto {
	t.Helper()
	out, err := Apply(m, p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkRewrite saves the rewritten model out, checks that ONNX Runtime's
// outputs on input x of the given shape match want within 1e-4 and that
// the ONNX checker accepts the file.
func checkRewrite(t *testing.T, label string, out *onnxpb.ModelProto, x []float32, shape []int64, want map[string]ortrun.Tensor) {
	t.Helper()
	path := save(t, out, "lpr.onnx")
	compareOutputs(t, label, runModel(t, path, x, shape), want, 1e-4)
	testutil.CheckONNX(t, path)
}

// relMaxAbs returns max|got - want| / max|want|.
func relMaxAbs(got, want []float32) float64 {
	var d, s float64
	for i := range want {
		d = math.Max(d, math.Abs(float64(got[i])-float64(want[i])))
		s = math.Max(s, math.Abs(float64(want[i])))
	}
	if s == 0 {
		return d
	}
	return d / s
}

func compareOutputs(t *testing.T, label string, got, want map[string]ortrun.Tensor, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d outputs, want %d", label, len(got), len(want))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Fatalf("%s: output %q missing", label, name)
		}
		if fmt.Sprint(g.Shape) != fmt.Sprint(w.Shape) {
			t.Fatalf("%s: output %q shape %v, want %v", label, name, g.Shape, w.Shape)
		}
		if e := relMaxAbs(g.Data, w.Data); e > tol || math.IsNaN(e) {
			t.Errorf("%s: output %q relative max-abs error %.3g > %.3g", label, name, e, tol)
		}
	}
}

func fullRankPolicy() svd.Policy { return svd.Policy{Ratio: 1} }

// forced are plan options that replace layers even when not smaller.
var forced = PlanOptions{Select: Selection{Force: true}}

func TestFullRankRewriteReproducesOutputs(t *testing.T) {
	testutil.RequireORT(t)
	for _, opset := range []int64{9, 13} {
		m := lprNet(8, opset)
		orig := save(t, m, "orig.onnx")
		rng := rand.New(rand.NewSource(opset))
		shape := []int64{2, 3, 6, 6}
		x := randomInput(rng, shape...)
		want := runModel(t, orig, x, shape)
		for _, kind := range allResiduals {
			t.Run(fmt.Sprintf("opset%d/%s", opset, kind), func(t *testing.T) {
				p, err := NewPlan(context.Background(), m, fullRankPolicy(), kind, forced)
				if err != nil {
					t.Fatal(err)
				}
				if p.Replaced() != 3 || len(p.Layers) != 3 {
					t.Fatalf("replaced %d of %d layers, want 3 of 3", p.Replaced(), len(p.Layers))
				}
				checkRewrite(t, kind.String(), mustApply(t, m, p), x, shape, want)
			})
		}
	}
}

// TestRewriteMatchesDenseReconstruction checks the graph form at a low
// rank: the LPR model must compute what the original computes with each
// replaced weight set to B A + diag(d) (none, identity, diag and dw1).
func TestRewriteMatchesDenseReconstruction(t *testing.T) {
	testutil.RequireORT(t)
	const c = 12
	for _, kind := range []svd.ResidualKind{svd.KindNone, svd.KindIdentity, svd.KindDiag, svd.KindDepthwise(1)} {
		t.Run(kind.String(), func(t *testing.T) {
			m := lprNet(c, 13)
			folded, n, err := FoldBatchNorm(m)
			if err != nil || n != 1 {
				t.Fatalf("fold: %d, %v", n, err)
			}
			p, err := NewPlan(context.Background(), folded, svd.Policy{Rank: 3}, kind, PlanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			out, err := Apply(folded, p)
			if err != nil {
				t.Fatal(err)
			}
			// reference: the folded model with W := B A + R
			ref := folded
			ix := newGraphIndex(ref.Graph)
			for _, l := range p.Layers {
				f := l.Factors
				if f == nil || f.Rank != 3 {
					t.Fatalf("layer %s: factors %+v", l.Name, f)
				}
				wHat := make([]float32, c*c)
				for o := 0; o < c; o++ {
					for i := 0; i < c; i++ {
						var s float64
						for k := 0; k < f.Rank; k++ {
							s += float64(f.B[o*f.Rank+k]) * float64(f.A[k*c+i])
						}
						if o == i {
							switch kind.Type {
							case svd.Identity:
								s++
							case svd.Diag:
								s += float64(f.Diag[o])
							case svd.Depthwise:
								s += float64(f.Taps[o])
							}
						}
						wHat[o*c+i] = float32(s)
					}
				}
				w := ix.inits[l.Weight]
				*w = *onnxio.NewFloat32(w.Name, w.Dims, wHat)
			}
			shape := []int64{3, 3, 6, 6}
			x := randomInput(rand.New(rand.NewSource(5)), shape...)
			compareOutputs(t, kind.String(), runModel(t, save(t, out, "lpr.onnx"), x, shape), runModel(t, save(t, ref, "ref.onnx"), x, shape), 1e-4)
		})
	}
}

// TestDepthwiseResidualAgainstDirectSum checks the dw3 form (taps layout,
// padding) against a direct evaluation in Go of
// y = B (A x) + b + dwconv3x3(x) on a model that is one candidate Conv.
func TestDepthwiseResidualAgainstDirectSum(t *testing.T) {
	testutil.RequireORT(t)
	const c, h, w = 4, 5, 6
	b := newBuilder(3)
	y := b.op("Conv", []string{"x", b.weight("w", 0.5, c, c, 1, 1), b.weight("b", 0.5, c)})
	m := b.model(13, []int64{1, c, h, w}, y)
	p, err := NewPlan(context.Background(), m, svd.Policy{Rank: 2}, svd.KindDepthwise(3), forced)
	if err != nil {
		t.Fatal(err)
	}
	l := &p.Layers[0]
	rng := rand.New(rand.NewSource(9))
	for i := range l.Factors.Taps {
		l.Factors.Taps[i] = float32(rng.NormFloat64())
	}
	out := mustApply(t, m, p)
	x := randomInput(rng, 1, c, h, w)
	got := runModel(t, save(t, out, "dw.onnx"), x, []int64{1, c, h, w})[y].Data
	f := l.Factors
	want := make([]float32, c*h*w)
	for o := 0; o < c; o++ {
		for i := 0; i < h; i++ {
			for j := 0; j < w; j++ {
				s := float64(l.Bias[o])
				for k := 0; k < f.Rank; k++ {
					var a float64
					for ci := 0; ci < c; ci++ {
						a += float64(f.A[k*c+ci]) * float64(x[(ci*h+i)*w+j])
					}
					s += float64(f.B[o*f.Rank+k]) * a
				}
				for di := -1; di <= 1; di++ {
					for dj := -1; dj <= 1; dj++ {
						ii, jj := i+di, j+dj
						if ii >= 0 && ii < h && jj >= 0 && jj < w {
							s += float64(f.Taps[o*9+(di+1)*3+dj+1]) * float64(x[(o*h+ii)*w+jj])
						}
					}
				}
				want[(o*h+i)*w+j] = float32(s)
			}
		}
	}
	if e := relMaxAbs(got, want); e > 1e-5 {
		t.Fatalf("dw3 residual: relative error %.3g", e)
	}
}

func TestFoldBatchNormExact(t *testing.T) {
	m := lprNet(8, 13)
	folded, n, err := FoldBatchNorm(m)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("folded %d, want 1", n)
	}
	for _, nd := range folded.Graph.Node {
		if nd.OpType == "BatchNormalization" {
			t.Fatalf("BatchNormalization left after folding")
		}
	}
	// The folded weight is s·W and the bias s·(0 - mean) + beta, to float32
	// rounding of the float64 result.
	ix, fx := newGraphIndex(m.Graph), newGraphIndex(folded.Graph)
	var conv, bn *onnxpb.NodeProto
	for i, nd := range m.Graph.Node {
		if nd.OpType == "BatchNormalization" {
			bn, conv = nd, m.Graph.Node[i-1]
		}
	}
	w, _, _, _ := ix.constFloats(conv.Input[1])
	var p [4][]float32
	for i := range p {
		p[i], _, _, _ = ix.constFloats(bn.Input[i+1])
	}
	var fconv *onnxpb.NodeProto
	for _, nd := range folded.Graph.Node {
		if nd.Name == conv.Name {
			fconv = nd
		}
	}
	if fconv == nil || fconv.Output[0] != bn.Output[0] || len(fconv.Input) != 3 {
		t.Fatalf("folded conv %v", fconv)
	}
	fw, _, _, _ := fx.constFloats(fconv.Input[1])
	fb, _, _, _ := fx.constFloats(fconv.Input[2])
	for o := 0; o < 8; o++ {
		s := float64(p[0][o]) / math.Sqrt(float64(p[3][o])+1e-3)
		for i := 0; i < 8; i++ {
			if want := float32(float64(w[o*8+i]) * s); fw[o*8+i] != want {
				t.Fatalf("W'[%d,%d] = %v, want %v", o, i, fw[o*8+i], want)
			}
		}
		if want := float32(-float64(p[2][o])*s + float64(p[1][o])); fb[o] != want {
			t.Fatalf("b'[%d] = %v, want %v", o, fb[o], want)
		}
	}
	for _, name := range bn.Input[1:] {
		if _, ok := fx.inits[name]; ok {
			t.Errorf("BatchNormalization parameter %q not removed", name)
		}
	}
	if _, ok := fx.inits[conv.Input[1]]; ok {
		t.Errorf("unfolded weight %q not removed", conv.Input[1])
	}
	if testutil.RequireORT(t) != "" {
		shape := []int64{2, 3, 6, 6}
		x := randomInput(rand.New(rand.NewSource(2)), shape...)
		compareOutputs(t, "folded", runModel(t, save(t, folded, "f.onnx"), x, shape), runModel(t, save(t, m, "m.onnx"), x, shape), 1e-5)
	}
}

func TestApplyKeepsModelAndRecordsMetadata(t *testing.T) {
	m := lprNet(8, 13)
	before := onnxEncode(t, m)
	p, err := NewPlan(context.Background(), m, svd.Policy{Rank: 2}, svd.KindDiag, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Tool = "lprconv test"
	out := mustApply(t, m, p)
	if onnxEncode(t, m) != before {
		t.Fatal("Apply modified its input model")
	}
	if out.IrVersion != m.IrVersion || out.OpsetImport[0].Version != 13 || out.ProducerName != m.ProducerName || out.DocString != "doc" {
		t.Errorf("model header changed")
	}
	if fmt.Sprint(out.Graph.Input) != fmt.Sprint(m.Graph.Input) || fmt.Sprint(out.Graph.Output) != fmt.Sprint(m.Graph.Output) {
		t.Errorf("graph inputs or outputs changed")
	}
	if v, ok := onnxio.Metadata(out, "origin"); !ok || v != "test" {
		t.Errorf("existing metadata lost")
	}
	md, ok, err := ReadMetadata(out)
	if err != nil || !ok {
		t.Fatalf("metadata: %v %v", ok, err)
	}
	if md.Format != 1 || md.Tool != "lprconv test" || md.Residual != "diag" || len(md.Layers) != 3 {
		t.Fatalf("metadata %+v", md)
	}
	for i, l := range md.Layers {
		if l.Name != p.Layers[i].Name || l.Rank != 2 || l.Channels != 8 || l.Residual != "diag" {
			t.Errorf("metadata layer %+v", l)
		}
	}
	// names, and no dead tensors or nodes
	ix := newGraphIndex(out.Graph)
	for _, l := range p.Layers {
		for _, n := range []string{"/lpr_a", "/lpr_b", "/lpr_res", "/lpr_add"} {
			found := false
			for _, nd := range out.Graph.Node {
				found = found || nd.Name == l.Name+n
			}
			if !found {
				t.Errorf("node %s%s missing", l.Name, n)
			}
		}
		if _, ok := ix.inits[l.Weight]; ok {
			t.Errorf("old weight %q still in the graph", l.Weight)
		}
		if _, ok := ix.producer[l.Output]; !ok {
			t.Errorf("output %q of layer %s no longer produced", l.Output, l.Name)
		}
	}
	for _, tn := range out.Graph.Initializer {
		if len(ix.consumers[tn.Name]) == 0 {
			t.Errorf("initializer %q is unused", tn.Name)
		}
	}
	for _, nd := range out.Graph.Node {
		if nd.OpType == "BatchNormalization" || nd.OpType == "Identity" && len(ix.consumers[nd.Output[0]]) == 0 {
			t.Errorf("dead or folded node %s left", nd.Name)
		}
	}
	if err := onnxio.Check(out); err != nil {
		t.Fatal(err)
	}
	// accounting: the plan's totals are those of the written model
	s, err := Inspect(out, ShapeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Params != p.ParamsAfter || s.MACs != p.MACsAfter {
		t.Errorf("plan says %d params, %d MACs after; model has %d, %d", p.ParamsAfter, p.MACsAfter, s.Params, s.MACs)
	}
	var layerBefore, layerAfter int64
	for _, l := range p.Layers {
		layerBefore += l.MACsBefore
		layerAfter += l.MACsAfter
		// rank 2 diag: 2·2·8 + 8 + bias
		if want := int64(2*2*8 + 8); l.ParamsAfter != want && l.ParamsAfter != want+8 {
			t.Errorf("layer %s params after %d", l.Name, l.ParamsAfter)
		}
	}
	if p.MACsBefore-p.MACsAfter != layerBefore-layerAfter {
		t.Errorf("MAC totals %d -> %d disagree with layers %d -> %d", p.MACsBefore, p.MACsAfter, layerBefore, layerAfter)
	}
	js, err := json.Marshal(p)
	if err != nil || !strings.Contains(string(js), `"rel_err"`) {
		t.Errorf("plan JSON: %v %s", err, js)
	}
}

func TestPlanDecisions(t *testing.T) {
	m := lprNet(8, 13)
	names := []string{}
	cands, _ := FindCandidates(m, ShapeOptions{})
	for _, c := range cands {
		names = append(names, c.Name)
	}
	ex, _ := ParseExclude([]string{"^" + names[1] + "$"})
	p, err := NewPlan(context.Background(), m, svd.Policy{Rank: 2}, svd.KindIdentity, PlanOptions{Select: Selection{Exclude: ex, Ranks: map[string]LayerRank{names[2]: {Rank: 6}}}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Layers[0].Replace || p.Layers[0].Rank != 2 {
		t.Errorf("layer 0: %+v", p.Layers[0].Reason)
	}
	if p.Layers[1].Replace || !p.Layers[1].Excluded {
		t.Errorf("layer 1 should be excluded: %s", p.Layers[1].Reason)
	}
	if p.Layers[2].Replace || p.Layers[2].Rank != 6 || !strings.Contains(p.Layers[2].Reason, "does not shrink") {
		t.Errorf("layer 2 at rank 6 of 8 should be kept: %s", p.Layers[2].Reason)
	}
	// RelErr is ‖W − (I + B A)‖_F / ‖W‖_F, recomputed here.
	l0 := p.Layers[0]
	var num, den float64
	for o := 0; o < 8; o++ {
		for i := 0; i < 8; i++ {
			v := 0.0
			if o == i {
				v = 1
			}
			for k := 0; k < 2; k++ {
				v += float64(l0.Factors.B[o*2+k]) * float64(l0.Factors.A[k*8+i])
			}
			d := float64(l0.W[o*8+i]) - v
			num += d * d
			den += float64(l0.W[o*8+i]) * float64(l0.W[o*8+i])
		}
	}
	if want := math.Sqrt(num / den); math.Abs(l0.RelErr-want) > 1e-4*want {
		t.Errorf("relative error %v, recomputed %v", l0.RelErr, want)
	}
	out := mustApply(t, m, p)
	md, _, _ := ReadMetadata(out)
	if len(md.Layers) != 1 || md.Layers[0].Name != names[0] {
		t.Errorf("metadata %+v", md)
	}
	// A plan for another model is refused.
	other := lprNet(8, 13)
	other.Graph.Node[3].Name = "renamed"
	if _, err := Apply(other, p); err == nil || !strings.Contains(err.Error(), "another model") {
		t.Errorf("Apply with a foreign plan: %v", err)
	}
	// Factors that do not fit are refused.
	p.Layers[0].Factors.Rank = 5
	if _, err := Apply(m, p); err == nil {
		t.Errorf("Apply accepted factors of the wrong rank")
	}
}

func onnxEncode(t *testing.T, m *onnxpb.ModelProto) string {
	t.Helper()
	b, err := onnxio.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestApplyDeclaresModuleShapes checks the value_info that Apply adds for
// the LPR tensors: the dynamic batch keeps its name, the rank and the
// spatial dims are filled in.
func TestApplyDeclaresModuleShapes(t *testing.T) {
	m := lprNet(8, 13)
	p, err := NewPlan(context.Background(), m, svd.Policy{Rank: 3}, svd.KindDiag, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := mustApply(t, m, p)
	vi := map[string]string{}
	for _, v := range out.Graph.ValueInfo {
		var dims []string
		for _, d := range v.GetType().GetTensorType().GetShape().GetDim() {
			if d.GetDimParam() != "" {
				dims = append(dims, d.GetDimParam())
			} else {
				dims = append(dims, fmt.Sprint(d.GetDimValue()))
			}
		}
		vi[v.Name] = strings.Join(dims, ",")
	}
	for _, l := range p.Layers {
		for name, want := range map[string]string{
			l.Name + "/lpr_a_out":   "N,3,6,6",
			l.Name + "/lpr_b_out":   "N,8,6,6",
			l.Name + "/lpr_res_out": "N,8,6,6",
			l.Input:                 "N,8,6,6",
		} {
			if vi[name] != want {
				t.Errorf("value_info %s = %q, want %q", name, vi[name], want)
			}
		}
	}
}

func TestPlanChannelAlign(t *testing.T) {
	m := lprNet(12, 13) // C = 12: a multiple of 4, not of 8
	for _, tc := range []struct {
		align    int
		replaced int
	}{{0, 3}, {1, 3}, {4, 3}, {8, 0}} {
		p, err := NewPlan(context.Background(), m, svd.Policy{Rank: 2}, svd.KindDiag, PlanOptions{ChannelAlign: tc.align})
		if err != nil {
			t.Fatal(err)
		}
		if p.Replaced() != tc.replaced {
			t.Errorf("align %d: replaced %d, want %d", tc.align, p.Replaced(), tc.replaced)
		}
		for _, l := range p.Layers {
			if !l.Replace && !strings.Contains(l.Reason, "not a multiple of 8") {
				t.Errorf("align %d: reason %q", tc.align, l.Reason)
			}
		}
	}
}
