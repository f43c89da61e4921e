package fastform

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/internal/enginetest"
	"github.com/lprconv/lprconv/internal/ortweb"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/ortapi"
	"github.com/lprconv/lprconv/shapefold"
	"github.com/lprconv/lprconv/svd"
)

// runEngine runs m in the engine on deterministic inputs at one batch size.
func runEngine(t *testing.T, m *onnxpb.ModelProto, batch int) map[string]*engine.Tensor {
	t.Helper()
	return enginetest.Run(t, m, batch, uint64(batch)+3)
}

// relErr is max |a−b| / max |a| over two output sets.
func relErr(t *testing.T, want, got map[string]*engine.Tensor) float64 {
	t.Helper()
	var diff, scale float64
	for name, w := range want {
		g := got[name]
		if g == nil || !slices.Equal(w.Shape, g.Shape) {
			t.Fatalf("output %s: shape %v, want %v", name, g, w.Shape)
		}
		for i := range w.F {
			diff = math.Max(diff, math.Abs(float64(w.F[i]-g.F[i])))
			scale = math.Max(scale, math.Abs(float64(w.F[i])))
		}
	}
	return diff / scale
}

// compressed returns the fixture rewritten with diag LPR modules at exact
// ranks (every square 1x1 convolution replaced) and its shape arithmetic
// folded: what compress hands to Rewrite.
func compressed(t *testing.T, name string) *onnxpb.ModelProto {
	t.Helper()
	m, err := onnxio.Load(testutil.Fixture(t, name))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := convert.NewPlan(context.Background(), m, svd.Policy{Ratio: 0.25, Multiple: 1}, svd.KindDiag, convert.PlanOptions{SVD: svd.Options{Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	rw, err := convert.Apply(m, plan)
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := shapefold.Fold(rw)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestRewriteFixtures: on every fixture's compressed model, the shuffle
// rewrite alone is bit-identical and removes every channel-shuffle
// Transpose; with the diag folds the outputs agree to float32 round-off;
// MobileNets fold nothing (ReLU before every module, and without
// relabeling each module has a negative scale); the input model is
// not modified and the result is deterministic.
func TestRewriteFixtures(t *testing.T) {
	for _, path := range testutil.Fixtures(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			m := compressed(t, name)
			before := proto.Clone(m)
			shuffleNet := strings.HasPrefix(name, "shufflenet")
			batches := []int{1, 5}
			if strings.Contains(name, "op9") {
				batches = []int{1} // its batch is fixed
			}
			s, rep, err := Rewrite(m, Options{NoDiagFold: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := onnxio.Check(s); err != nil {
				t.Fatal(err)
			}
			if shuffleNet {
				if rep.Shuffles == 0 || rep.Shuffles != testutil.OpCount(m, "Transpose") || testutil.OpCount(s, "Transpose") != 0 {
					t.Errorf("shuffles %d of %d Transposes, %d left", rep.Shuffles, testutil.OpCount(m, "Transpose"), testutil.OpCount(s, "Transpose"))
				}
			} else if rep.Changed() || !proto.Equal(s, m) {
				t.Errorf("MobileNet changed: %+v", rep)
			}
			for _, b := range batches {
				want, got := runEngine(t, m, b), runEngine(t, s, b)
				for k, w := range want {
					if !slices.Equal(w.F, got[k].F) {
						t.Errorf("batch %d: shuffle rewrite changed output %s", b, k)
					}
				}
			}
			f, rep, err := Rewrite(m, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := onnxio.Check(f); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(m, before) {
				t.Fatal("Rewrite modified its input")
			}
			again, _, _ := Rewrite(m, Options{})
			if !proto.Equal(f, again) {
				t.Error("Rewrite is not deterministic")
			}
			if twice, rep2, err := Rewrite(f, Options{}); err != nil || rep2.Changed() || !proto.Equal(twice, f) {
				t.Errorf("Rewrite of its own output: %s, %v", rep2, err)
			}
			folds := len(rep.DiagFolds)
			t.Logf("%d shuffles, %d diag folds", rep.Shuffles, folds)
			if shuffleNet {
				// Every block's second pointwise layer follows a depthwise
				// convolution (and its BatchNorm) with no activation.
				if folds < 10 || testutil.OpCount(f, "Conv") != testutil.OpCount(m, "Conv")-folds {
					t.Errorf("%d diag folds, Conv %d -> %d", folds, testutil.OpCount(m, "Conv"), testutil.OpCount(f, "Conv"))
				}
				if md, ok := onnxio.Metadata(f, MetadataKey); !ok || !strings.Contains(md, `"shuffles"`) {
					t.Errorf("metadata %q", md)
				}
			} else if folds != 0 {
				t.Errorf("MobileNet: %d diag folds through a ReLU", folds)
			}
			for _, b := range batches {
				if e := relErr(t, runEngine(t, m, b), runEngine(t, f, b)); e > 2e-6 {
					t.Errorf("batch %d: relative error %.3g after folding", b, e)
				}
			}
		})
	}
}

// TestRewriteRunsInORT: the rewritten ShuffleNetV2 fixtures pass ONNX's
// checker and give ONNX Runtime's outputs for the unrewritten model at
// batch 1 and 3, natively and in onnxruntime-web.
func TestRewriteRunsInORT(t *testing.T) {
	lib := testutil.RequireORT(t)
	rt, err := ortapi.Load(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	for _, name := range []string{"shufflenetv2.onnx", "shufflenetv2_bn.onnx"} {
		t.Run(name, func(t *testing.T) {
			m := compressed(t, name)
			f, rep, err := Rewrite(m, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Shuffles == 0 || len(rep.DiagFolds) == 0 {
				t.Fatalf("nothing rewritten: %+v", rep)
			}
			dir := t.TempDir()
			orig, fast := filepath.Join(dir, "orig.onnx"), filepath.Join(dir, "fast.onnx")
			for p, mm := range map[string]*onnxpb.ModelProto{orig: m, fast: f} {
				if err := onnxio.Save(p, mm, onnxio.SaveOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			testutil.CheckONNX(t, fast)
			for _, batch := range []int{1, 3} {
				if e := ortDiff(t, rt, m, orig, fast, batch); e > 1e-5 {
					t.Errorf("batch %d: relative difference %.3g", batch, e)
				}
			}
			if _, err := ortweb.Dir(); err != nil {
				testutil.Skip(t, err.Error())
			}
			_, shapes := testutil.GraphInputs(m, 3)
			x := enginetest.Fill(shapes["input"], 5)
			web, err := ortweb.Run(fast, x, shapes["input"][1:], 3)
			if err != nil {
				t.Fatal(err)
			}
			native, err := ortRun(rt, orig, map[string]ortapi.Tensor{"input": {Shape: testutil.Int64s(shapes["input"]), Data: x}})
			if err != nil {
				t.Fatal(err)
			}
			if e := maxRel(native["logits"].Data, web.Data); e > 1e-4 {
				t.Errorf("onnxruntime-web: relative difference %.3g from the unrewritten model natively", e)
			}
		})
	}
}

func ortRun(rt *ortapi.Runtime, path string, in map[string]ortapi.Tensor) (map[string]ortapi.Tensor, error) {
	s, err := rt.NewSessionFromFile(path, ortapi.Options{IntraOpThreads: 1})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Run(in, nil)
}

// maxRel is max |a−b| / max |a|.
func maxRel(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d, s float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
		s = math.Max(s, math.Abs(float64(a[i])))
	}
	return d / s
}

// TestImageNetShuffleNetInORT: on ImageNet-shaped ShuffleNetV2 x1.0 (shape
// arithmetic folded, no LPR module), Rewrite turns every channel shuffle
// into one Concat and pads the four 58-channel branches of stage 2 to 60,
// after which ONNX Runtime runs every convolution in its blocked layout
// but the three that make 58 channels for a Concat; its outputs agree with
// the original's in ONNX Runtime.
func TestImageNetShuffleNetInORT(t *testing.T) {
	path := testutil.ImageNetModel(t, "shufflenetv2_x1.0.onnx")
	rt, err := ortapi.Load(testutil.RequireORT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	folded, _, err := shapefold.Fold(m)
	if err != nil {
		t.Fatal(err)
	}
	f, rep, err := Rewrite(folded, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Shuffles != 16 || len(rep.Padded) != 4 || len(rep.DiagFolds) != 0 {
		t.Fatalf("report %s, want 16 shuffles and 4 padded chains", rep)
	}
	for _, p := range rep.Padded {
		if p.From != 58 || p.To != 60 {
			t.Errorf("padded %+v, want 58 -> 60", p)
		}
	}
	dir := t.TempDir()
	fast := filepath.Join(dir, "fast.onnx")
	if err := onnxio.Save(fast, f, onnxio.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	plainConvs := func(p string) int {
		opt := filepath.Join(dir, "opt.onnx")
		s, err := rt.NewSessionFromFile(p, ortapi.Options{IntraOpThreads: 1, OptimizedModelPath: opt})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		om, err := onnxio.Load(opt)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, nd := range om.GetGraph().GetNode() {
			if (nd.GetOpType() == "Conv" || nd.GetOpType() == "FusedConv") && !strings.Contains(nd.GetDomain(), "nchwc") {
				n++
			}
		}
		return n
	}
	if before, after := plainConvs(path), plainConvs(fast); after != 3 || before <= after {
		t.Errorf("convolutions outside the blocked layout: %d before, %d after; want 3 after", before, after)
	}
	if e := ortDiff(t, rt, m, path, fast, 2); e > 1e-5 {
		t.Errorf("relative difference %.3g", e)
	}
}

// ortDiff runs the models at paths a and b (with m's inputs) in ONNX
// Runtime at one batch size and returns the largest relative difference of
// their outputs (maxRel, b against a).
func ortDiff(t *testing.T, rt *ortapi.Runtime, m *onnxpb.ModelProto, a, b string, batch int) float64 {
	t.Helper()
	names, shapes := testutil.GraphInputs(m, batch)
	in := map[string]ortapi.Tensor{}
	for _, n := range names {
		in[n] = ortapi.Tensor{Shape: testutil.Int64s(shapes[n]), Data: enginetest.Fill(shapes[n], uint64(batch)+11)}
	}
	want, err := ortRun(rt, a, in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ortRun(rt, b, in)
	if err != nil {
		t.Fatal(err)
	}
	var worst float64
	for k, w := range want {
		worst = math.Max(worst, maxRel(w.Data, got[k].Data))
	}
	return worst
}
