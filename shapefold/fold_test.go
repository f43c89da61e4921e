package shapefold

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/internal/enginetest"
	"github.com/lprconv/lprconv/internal/ortweb"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/ortapi"
)

// TestFoldFixtures: on every fixture the folded model computes the same
// outputs as the original, bit for bit in the engine, at batch sizes other
// than the sampled ones; ShuffleNetV2's shape arithmetic disappears.
func TestFoldFixtures(t *testing.T) {
	for _, path := range testutil.Fixtures(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			m, err := onnxio.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			f, rep, err := Fold(m)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Skipped != "" {
				t.Fatalf("skipped: %s", rep.Skipped)
			}
			if err := onnxio.Check(f); err != nil {
				t.Fatalf("folded model fails the structural check: %v", err)
			}
			if testutil.OpCount(m, "Shape") > 0 {
				if got := testutil.OpCount(f, "Shape") + testutil.OpCount(f, "Gather") + testutil.OpCount(f, "Unsqueeze"); got != 0 {
					t.Errorf("%d Shape/Gather/Unsqueeze nodes left", got)
				}
				if rep.Removed() < len(m.GetGraph().GetNode())/2 {
					t.Errorf("removed %d of %d nodes", rep.Removed(), rep.NodesBefore)
				}
				if rep.Reshapes == 0 {
					t.Errorf("no Reshape target rewritten")
				}
			}
			if testutil.OpCount(f, "Conv") != testutil.OpCount(m, "Conv") || testutil.OpCount(f, "Transpose") != testutil.OpCount(m, "Transpose") {
				t.Errorf("compute nodes changed: Conv %d -> %d", testutil.OpCount(m, "Conv"), testutil.OpCount(f, "Conv"))
			}
			batches := []int{1, 5}
			if fixedBatch(m) {
				batches = []int{1}
			}
			for _, batch := range batches {
				_, shapes := testutil.GraphInputs(m, batch)
				in := map[string]*engine.Tensor{}
				for name, s := range shapes {
					in[name] = engine.NewTensorF(enginetest.Fill(s, uint64(batch)), s...)
				}
				want := run(t, m, shapes, in)
				got := run(t, f, shapes, in)
				for name, w := range want {
					if !slices.Equal(w.Shape, got[name].Shape) || !slices.Equal(w.F, got[name].F) {
						t.Errorf("batch %d: output %s differs after folding", batch, name)
					}
				}
			}
		})
	}
}

func fixedBatch(m *onnxpb.ModelProto) bool {
	in := m.GetGraph().GetInput()[0]
	return in.GetType().GetTensorType().GetShape().GetDim()[0].GetDimValue() > 0
}

func run(t *testing.T, m *onnxpb.ModelProto, shapes map[string][]int, in map[string]*engine.Tensor) map[string]*engine.Tensor {
	t.Helper()
	return enginetest.RunInputs(t, m, shapes, in)
}

// TestFoldRunsInORT: the folded ShuffleNetV2 fixture gives ONNX Runtime's
// outputs for the original at batch 1 and 3, natively and in
// onnxruntime-web.
func TestFoldRunsInORT(t *testing.T) {
	lib := testutil.RequireORT(t)
	rt, err := ortapi.Load(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	m, err := onnxio.Load(testutil.Fixture(t, "shufflenetv2.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := Fold(m)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	paths := map[string]*onnxpb.ModelProto{"orig.onnx": m, "folded.onnx": f}
	for name, mm := range paths {
		b, err := onnxio.Encode(mm)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, batch := range []int{1, 3} {
		names, shapes := testutil.GraphInputs(m, batch)
		in := map[string]ortapi.Tensor{}
		for _, n := range names {
			in[n] = ortapi.Tensor{Shape: testutil.Int64s(shapes[n]), Data: enginetest.Fill(shapes[n], 11)}
		}
		var outs []map[string]ortapi.Tensor
		for _, name := range []string{"orig.onnx", "folded.onnx"} {
			s, err := rt.NewSessionFromFile(filepath.Join(dir, name), ortapi.Options{IntraOpThreads: 1})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			o, err := s.Run(in, nil)
			s.Close()
			if err != nil {
				t.Fatalf("%s at batch %d: %v", name, batch, err)
			}
			outs = append(outs, o)
		}
		for name, w := range outs[0] {
			g := outs[1][name]
			if !slices.Equal(w.Shape, g.Shape) {
				t.Fatalf("batch %d %s: shape %v vs %v", batch, name, w.Shape, g.Shape)
			}
			for i := range w.Data {
				if d := w.Data[i] - g.Data[i]; d > 1e-5 || d < -1e-5 {
					t.Fatalf("batch %d %s[%d]: %g vs %g", batch, name, i, w.Data[i], g.Data[i])
				}
			}
		}
	}
	if _, err := ortweb.Dir(); err != nil {
		testutil.Skip(t, err.Error())
	}
	_, shapes := testutil.GraphInputs(m, 4)
	x := enginetest.Fill(shapes["input"], 5)
	web, err := ortweb.Run(filepath.Join(dir, "folded.onnx"), x, shapes["input"][1:], 3)
	if err != nil {
		t.Fatal(err)
	}
	native, err := run1(rt, filepath.Join(dir, "orig.onnx"), map[string]ortapi.Tensor{"input": {Shape: testutil.Int64s(shapes["input"]), Data: x}})
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range native["logits"].Data {
		if d := web.Data[i] - w; d > 1e-4 || d < -1e-4 {
			t.Fatalf("onnxruntime-web logit %d: %g, native original %g", i, web.Data[i], w)
		}
	}
}

func run1(rt *ortapi.Runtime, path string, in map[string]ortapi.Tensor) (map[string]ortapi.Tensor, error) {
	s, err := rt.NewSessionFromFile(path, ortapi.Options{IntraOpThreads: 1})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Run(in, nil)
}
