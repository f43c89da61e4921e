package convert

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// fixtureCandidates is the expected candidate count per fixture family:
// MobileNetV1 0.25 has its 8 square pointwise convolutions (C = 32, 64,
// 128 x5, 256); ShuffleNetV2 x0.5 has two per unit in all 16 units plus
// the downsampling branch of stages 3 and 4, and in stage 2 both 24 -> 24
// first convolutions (its input already has 24 channels): 32 + 1 + 2 = 35.
var fixtureCandidates = map[string]int{"mobilenetv1": 8, "shufflenetv2": 35}

func fixtureFamily(path string) string {
	base := filepath.Base(path)
	for fam := range fixtureCandidates {
		if strings.HasPrefix(base, fam) {
			return fam
		}
	}
	return ""
}

func loadFixture(t *testing.T, path string) *onnxpb.ModelProto {
	t.Helper()
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fixtureImages returns n preprocessed test images (N,3,32,32) from
// testdata/images/test: gray replicated to 3 channels, normalized with the
// fixtures' mean 0.2860 and std 0.3530.
func fixtureImages(t *testing.T, n int) ([]float32, []int) {
	t.Helper()
	src, err := dataset.Open(filepath.Join(testutil.RepoRoot(t), "testdata", "images", "test"), dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	pre := dataset.Preprocess{Channels: 3, Height: 32, Width: 32, Mean: []float32{0.2860}, Std: []float32{0.3530}}
	idx := dataset.Random(dataset.Indices(src.Len()), n, 3)
	l, err := dataset.NewLoader(src, idx, pre, dataset.LoaderOptions{BatchSize: n})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	x := make([]float32, l.BatchLen())
	labels := make([]int, n)
	got, err := l.Next(x, labels)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return x[:got*pre.Size()], labels[:got]
}

func TestFixtureCandidates(t *testing.T) {
	for _, path := range testutil.Fixtures(t) {
		fam := fixtureFamily(path)
		if fam == "" {
			continue
		}
		t.Run(filepath.Base(path), func(t *testing.T) {
			m := loadFixture(t, path)
			s, err := Inspect(m, ShapeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Warnings) > 0 {
				t.Errorf("warnings: %v", s.Warnings)
			}
			if s.Candidates != fixtureCandidates[fam] {
				t.Errorf("%d candidates, want %d", s.Candidates, fixtureCandidates[fam])
			}
			for _, l := range s.Layers {
				if l.OutputShape == nil || (l.Op == "Conv" && l.MACs == 0) {
					t.Errorf("layer %s: shape %v, MACs %d", l.Name, l.OutputShape, l.MACs)
				}
			}
			if out := s.Outputs[m.Graph.Output[0].Name]; len(out) != 2 || out[0] != 1 || out[1] != 10 {
				t.Errorf("output shape %v, want [1 10]", out)
			}
		})
	}
}

// TestFixturesFullRankEquivalence rewrites every candidate of every
// fixture at rank C (none and identity residuals, forced) and checks in
// ONNX Runtime that the outputs match the original on random and real
// inputs, and that BatchNorm folding alone is exact too.
func TestFixturesFullRankEquivalence(t *testing.T) {
	testutil.RequireORT(t)
	images, _ := fixtureImages(t, 16)
	for _, path := range testutil.Fixtures(t) {
		if fixtureFamily(path) == "" {
			continue
		}
		m := loadFixture(t, path)
		rng := rand.New(rand.NewSource(1))
		inputs := map[string][]float32{"random": randomInput(rng, 16, 3, 32, 32), "images": images}
		want := map[string]map[string]ortrun.Tensor{}
		for name, x := range inputs {
			want[name] = runInput(t, path, m, x)
		}
		t.Run(filepath.Base(path)+"/fold", func(t *testing.T) {
			folded, n, err := FoldBatchNorm(m)
			if err != nil {
				t.Fatal(err)
			}
			hasBN := strings.Contains(path, "_bn")
			if hasBN != (n > 0) {
				t.Fatalf("folded %d BatchNormalization nodes", n)
			}
			p := save(t, folded, "folded.onnx")
			for name, x := range inputs {
				compareOutputs(t, name, runInput(t, p, folded, x), want[name], 1e-4)
			}
		})
		for _, kind := range []svd.ResidualKind{svd.KindNone, svd.KindIdentity} {
			t.Run(fmt.Sprintf("%s/%s", filepath.Base(path), kind), func(t *testing.T) {
				p, err := NewPlan(context.Background(), m, fullRankPolicy(), kind, forced)
				if err != nil {
					t.Fatal(err)
				}
				if p.Replaced() != fixtureCandidates[fixtureFamily(path)] {
					t.Fatalf("replaced %d layers", p.Replaced())
				}
				out := mustApply(t, m, p)
				op := save(t, out, "full.onnx")
				for name, x := range inputs {
					compareOutputs(t, name, runInput(t, op, out, x), want[name], 1e-4)
				}
			})
		}
	}
}

// runInput runs the model on the images x (N,3,32,32), in chunks of the
// model's batch size when its batch dim is fixed (the opset 9 exports),
// and returns the outputs for all N images.
func runInput(t *testing.T, path string, m *onnxpb.ModelProto, x []float32) map[string]ortrun.Tensor {
	t.Helper()
	const per = 3 * 32 * 32
	n := len(x) / per
	step := n
	if d := m.Graph.Input[0].GetType().GetTensorType().GetShape().GetDim()[0].GetDimValue(); d > 0 {
		step = int(d)
	}
	s, err := ortrun.NewSession(path, ortrun.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	all := map[string]ortrun.Tensor{}
	for i := 0; i < n; i += step {
		out, err := s.Run(map[string]ortrun.Tensor{m.Graph.Input[0].Name: {Shape: []int64{int64(step), 3, 32, 32}, Data: x[i*per : (i+step)*per]}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range out {
			a := all[name]
			a.Data = append(a.Data, v.Data...)
			a.Shape = append([]int64{int64(i + step)}, v.Shape[1:]...)
			all[name] = a
		}
	}
	return all
}

// TestFixturesEveryResidualIsValid writes every fixture compressed at
// ratio 1/4 with every residual kind and checks that ONNX's checker
// accepts it, that ONNX Runtime runs it, that the opset and IR version are
// kept and that the accounting matches the written graph.
func TestFixturesEveryResidualIsValid(t *testing.T) {
	testutil.RequireORT(t)
	testutil.RequirePythonONNX(t)
	x := randomInput(rand.New(rand.NewSource(2)), 2, 3, 32, 32)
	for _, path := range testutil.Fixtures(t) {
		if fixtureFamily(path) == "" {
			continue
		}
		m := loadFixture(t, path)
		for _, kind := range allResiduals {
			t.Run(fmt.Sprintf("%s/%s", filepath.Base(path), kind), func(t *testing.T) {
				p, err := NewPlan(context.Background(), m, svd.Policy{Ratio: 0.25}, kind, PlanOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if p.Replaced() == 0 {
					t.Fatal("nothing replaced at ratio 1/4")
				}
				out := mustApply(t, m, p)
				if opsetVersion(out) != opsetVersion(m) || out.IrVersion != m.IrVersion {
					t.Errorf("opset %d IR %d, want %d %d", opsetVersion(out), out.IrVersion, opsetVersion(m), m.IrVersion)
				}
				if p.ParamsAfter >= p.ParamsBefore || p.MACsAfter >= p.MACsBefore {
					t.Errorf("params %d -> %d, MACs %d -> %d", p.ParamsBefore, p.ParamsAfter, p.MACsBefore, p.MACsAfter)
				}
				op := save(t, out, "lpr.onnx")
				got := runInput(t, op, out, x)
				for name, v := range got {
					if len(v.Data) != 20 || v.Shape[0] != 2 {
						t.Errorf("output %s has %d values", name, len(v.Data))
					}
				}
				testutil.CheckONNX(t, op)
			})
		}
	}
}
