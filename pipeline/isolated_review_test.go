package pipeline

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/fastform"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/ortapi"
	"github.com/lprconv/lprconv/quantize"
)

// TestReviewFoldedLayers checks foldedLayers against the written model
// (each folded Add is found by its output, the layer's own) and isolatedPair
// with folded in ONNX Runtime: the folded pair computes what the plain pair
// computes, and ONNX's checker accepts it. A quantized export keeps its
// residuals, so no layer is folded for fp16 or int8.
func TestReviewFoldedLayers(t *testing.T) {
	pm, plan := relabeledPlan(t)
	for _, p := range []quantize.Precision{quantize.FP16, quantize.INT8} {
		if f, err := foldedLayers(&Options{Precision: &Precision{Precision: p}}, pm, plan); err != nil || len(f) != 0 {
			t.Errorf("%s: %d layers folded (%v), want none", p, len(f), err)
		}
	}
	folded, err := foldedLayers(&Options{}, pm, plan)
	if err != nil {
		t.Fatal(err)
	}
	// What the written model folds, by the Add's output.
	applied, err := convert.Apply(pm, plan)
	if err != nil {
		t.Fatal(err)
	}
	_, rep, err := fastform.Rewrite(applied, fastform.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addOut := map[string]string{}
	for _, n := range applied.GetGraph().GetNode() {
		if len(n.GetOutput()) == 1 {
			addOut[n.GetName()] = n.GetOutput()[0]
		}
	}
	want := map[string]bool{}
	for _, f := range rep.DiagFolds {
		for _, l := range plan.Layers {
			if l.Replace && addOut[f.Add] == l.Output {
				want[l.Name] = true
			}
		}
	}
	if len(want) == 0 || len(want) != len(folded) {
		t.Errorf("foldedLayers %d layers, the written model folds %d", len(folded), len(want))
	}
	for name := range folded {
		if !want[name] {
			t.Errorf("foldedLayers names %s, whose residual is not folded", name)
		}
	}

	lib := testutil.RequireORT(t)
	if lib == "" {
		return
	}
	rt, err := ortapi.Load(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	dir := t.TempDir()
	var paths []string
	for _, l := range plan.Layers {
		if !l.Replace || !folded[l.Name] {
			continue
		}
		layerP, modP, err := isolatedPair(pm, plan.Residual, l, 5, 3, false)
		if err != nil {
			t.Fatal(err)
		}
		layerF, modF, err := isolatedPair(pm, plan.Residual, l, 5, 3, true)
		if err != nil {
			t.Fatal(err)
		}
		for i, pair := range [][2][]byte{{layerP, layerF}, {modP, modF}} {
			var res [2]map[string]ortapi.Tensor
			for j, enc := range pair {
				mm, err := onnxio.Decode(enc)
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(dir, fmt.Sprintf("%s_%d_%d.onnx", filepath.Base(l.Name), i, j))
				if err := onnxio.Save(path, mm, onnxio.SaveOptions{}); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, path)
				res[j] = ortOnce(t, rt, mm, path)
			}
			for k, w := range res[0] {
				if e := relL2(res[1][k].Data, w.Data); !(e <= 1e-5) {
					t.Errorf("%s (%s): folded differs by %g in ONNX Runtime", l.Name, []string{"layer", "module"}[i], e)
				}
			}
		}
	}
	testutil.RequirePythonONNX(t)
	for _, p := range paths {
		testutil.CheckONNX(t, p)
	}
}

// ortOnce runs the model at path in ONNX Runtime on its one graph input
// (batch 2, the same values whatever the input's name).
func ortOnce(t *testing.T, rt *ortapi.Runtime, m *onnxpb.ModelProto, path string) map[string]ortapi.Tensor {
	t.Helper()
	names, shapes := testutil.GraphInputs(m, 2)
	if len(names) != 1 {
		t.Fatalf("%s: inputs %v", path, names)
	}
	s := shapes[names[0]]
	n := 1
	for _, d := range s {
		n *= d
	}
	x := make([]float32, n)
	for i := range x {
		x[i] = float32((i*37)%101)/50 - 1
	}
	sess, err := rt.NewSessionFromFile(path, ortapi.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Run(map[string]ortapi.Tensor{names[0]: {Shape: testutil.Int64s(s), Data: x}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
