package evaluate

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// TestNonFiniteLogitsNeverCorrect is the scoring part of the hostile-input
// corpus (issue 11, case 4): a sample whose logits hold a NaN or an
// infinity is never counted as correct or as agreeing, and is counted in
// NonFinite. Before, all-NaN logits ranked the label first (NaN compares
// false with everything) and scored top-1 100%.
func TestNonFiniteLogitsNeverCorrect(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, tc := range []struct {
		name                      string
		row                       []float32 // 3 classes
		label                     int
		top1, top5, nonFinite     int
		agreeWithFinite, agreeNaN int // Fidelity.Agree against [0,1,0] and against itself
	}{
		{"finite, correct", []float32{0, 1, 0}, 1, 1, 1, 0, 1, 1},
		{"all NaN", []float32{nan, nan, nan}, 1, 0, 0, 1, 0, 0},
		{"NaN at the label", []float32{0, nan, 0}, 1, 0, 0, 1, 0, 0},
		{"NaN elsewhere", []float32{nan, 1, 0}, 1, 0, 0, 1, 0, 0},
		{"+Inf at the label", []float32{0, inf, 0}, 1, 0, 0, 1, 0, 0},
		{"-Inf elsewhere", []float32{-inf, 1, 0}, 1, 0, 0, 1, 0, 0},
		{"all NaN, unlabelled", []float32{nan, nan, nan}, -1, 0, 0, 1, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a Accuracy
			if err := a.Add(tc.row, 3, []int{tc.label}); err != nil {
				t.Fatal(err)
			}
			if a.Top1 != tc.top1 || a.Top5 != tc.top5 || a.NonFinite != tc.nonFinite || a.N != 1 {
				t.Fatalf("got %+v, want top1 %d top5 %d non-finite %d", a, tc.top1, tc.top5, tc.nonFinite)
			}
			err := a.CheckFinite()
			if (err != nil) != (tc.nonFinite > 0) || (err != nil && !errors.Is(err, ErrNonFinite)) {
				t.Fatalf("CheckFinite = %v", err)
			}
			var f Fidelity
			if err := f.Add([]float32{0, 1, 0}, tc.row, 3); err != nil {
				t.Fatal(err)
			}
			if err := f.Add(tc.row, tc.row, 3); err != nil {
				t.Fatal(err)
			}
			if f.Agree != tc.agreeWithFinite+tc.agreeNaN || f.NonFinite != 2*tc.nonFinite {
				t.Fatalf("fidelity: agree %d non-finite %d, want %d and %d", f.Agree, f.NonFinite, tc.agreeWithFinite+tc.agreeNaN, 2*tc.nonFinite)
			}
		})
	}
}

// TestRunNaNBias runs the MobileNetV1 fixture with its classifier bias set
// to NaN: every logit is NaN, so accuracy is 0 (not the 100% the issue
// found), every sample counts as non-finite, agreement with the intact
// model is 0, and Result.CheckFinite names the broken model.
func TestRunNaNBias(t *testing.T) {
	good, err := onnxio.Load(filepath.Join("..", "testdata", "models", "mobilenetv1.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	bad, err := onnxio.Load(filepath.Join("..", "testdata", "models", "mobilenetv1.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	// The classifier bias is the rank-1 float initializer read by the last
	// Gemm (or MatMul+Add) node.
	var bias *onnxpb.TensorProto
	inits := map[string]*onnxpb.TensorProto{}
	for _, ti := range bad.Graph.Initializer {
		inits[ti.GetName()] = ti
	}
	nodes := bad.Graph.Node
	for i := len(nodes) - 1; i >= 0 && bias == nil; i-- {
		for _, in := range nodes[i].Input {
			if ti := inits[in]; ti != nil && len(ti.Dims) == 1 && ti.GetDataType() == int32(onnxio.Float) {
				bias = ti
				break
			}
		}
	}
	if bias == nil {
		t.Fatal("no classifier bias found")
	}
	nan := make([]float32, bias.Dims[0])
	for i := range nan {
		nan[i] = float32(math.NaN())
	}
	*bias = *onnxio.NewFloat32(bias.GetName(), bias.GetDims(), nan)

	// Labelled samples: every label is 0, so an all-NaN row scoring its
	// label first would give top-1 100%.
	noise, err := dataset.Noise{Count: 20, Size: 3 * 32 * 32, Seed: 3}.Open(8)
	if err != nil {
		t.Fatal(err)
	}
	src := labelled{noise}
	res, err := Run(context.Background(), []*onnxpb.ModelProto{good, bad}, src, Options{Batch: 8})
	if err != nil {
		t.Fatal(err)
	}
	acc := res.Models[1].Accuracy
	if acc.Labelled != 20 || acc.Top1 != 0 || acc.Top5 != 0 || acc.NonFinite != 20 {
		t.Fatalf("NaN model: %+v, want 20 labelled, 0 correct, 20 non-finite", acc)
	}
	if res.Models[0].Accuracy.NonFinite != 0 {
		t.Fatalf("intact model: %+v", res.Models[0].Accuracy)
	}
	if f := res.Fidelity[0]; f.Agree != 0 || f.NonFinite != 20 {
		t.Fatalf("fidelity: agree %d non-finite %d, want 0 and 20", f.Agree, f.NonFinite)
	}
	err = res.CheckFinite()
	var nf *NonFiniteError
	if !errors.Is(err, ErrNonFinite) || !errors.As(err, &nf) || nf.Model != 2 || nf.Samples != 20 || nf.Total != 20 {
		t.Fatalf("CheckFinite = %v, want model 2 with 20 of 20 samples", err)
	}
}

// labelled labels random samples with class 0.
type labelled struct{ dataset.Batches }

func (l labelled) Next(dst []float32, labels []int) (int, error) {
	n, err := l.Batches.Next(dst, labels)
	for i := range labels[:n] {
		labels[i] = 0
	}
	return n, err
}
