package convert

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// TestImageNetCandidates checks the candidate counts on the ImageNet-shaped
// exports (testdata/gen/export_imagenet.py): MobileNetV1 1.0 has 8 with
// C = 128, 256, 512 x5, 1024; ShuffleNetV2 x1.0 33 with C in {58, 116,
// 232}; MobileNetV2 none; MobileNetV3-Small 1. MobileNetV1 1.0 at 224x224
// has about 4.2M parameters and 569M MACs.
func TestImageNetCandidates(t *testing.T) {
	for _, tc := range []struct {
		file     string
		count    int
		channels map[int]int // C -> how many; nil: not checked
	}{
		{"mobilenetv1_1.0.onnx", 8, map[int]int{128: 1, 256: 1, 512: 5, 1024: 1}},
		{"shufflenetv2_x1.0.onnx", 33, nil},
		{"mobilenetv2.onnx", 0, map[int]int{}},
		{"mobilenetv3_small.onnx", 1, nil},
	} {
		t.Run(tc.file, func(t *testing.T) {
			m, err := onnxio.Load(testutil.ImageNetModel(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			s, err := Inspect(m, ShapeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Warnings) > 0 {
				t.Errorf("warnings: %v", s.Warnings)
			}
			cands, err := FindCandidates(m, ShapeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(cands) != tc.count || s.Candidates != tc.count {
				t.Fatalf("%d candidates (Inspect %d), want %d", len(cands), s.Candidates, tc.count)
			}
			got := map[int]int{}
			for _, c := range cands {
				got[c.Channels]++
				if tc.file == "shufflenetv2_x1.0.onnx" && c.Channels != 58 && c.Channels != 116 && c.Channels != 232 {
					t.Errorf("ShuffleNetV2 candidate %s has C = %d", c.Name, c.Channels)
				}
			}
			if tc.channels != nil && fmt.Sprint(got) != fmt.Sprint(tc.channels) {
				t.Errorf("channels %v, want %v", got, tc.channels)
			}
			if tc.file == "mobilenetv1_1.0.onnx" {
				if s.Params < 4.15e6 || s.Params > 4.3e6 {
					t.Errorf("MobileNetV1 1.0 has %d params, want about 4.2M", s.Params)
				}
				if math.Abs(float64(s.MACs)-569e6) > 0.005*569e6 {
					t.Errorf("MobileNetV1 1.0 has %d MACs, want about 569M", s.MACs)
				}
			}
		})
	}
}

// TestImageNetFullRankEquivalence rewrites the ImageNet-shaped MobileNetV1
// and ShuffleNetV2 at rank C and compares ONNX Runtime outputs.
func TestImageNetFullRankEquivalence(t *testing.T) {
	testutil.RequireORT(t)
	if testing.Short() {
		testutil.Skip(t, "ImageNet-shaped full-rank rewrite is slow; run without -short")
	}
	for _, file := range []string{"mobilenetv1_1.0.onnx", "shufflenetv2_x1.0.onnx"} {
		m, feed, want := imageNetReference(t, file, []int64{2, 3, 224, 224})
		for _, kind := range []svd.ResidualKind{svd.KindNone, svd.KindIdentity} {
			t.Run(file+"/"+kind.String(), func(t *testing.T) {
				var p *Plan
				var err error
				if file == "shufflenetv2_x1.0.onnx" {
					p, err = NewPlan(context.Background(), m, fullRankPolicy(), kind, forced)
				} else {
					// A full-rank SVD of MobileNetV1's 512- and 1024-wide
					// weights costs tens of CPU seconds, so plan cheaply and
					// place exact rank-C factors A = I, B = W - R instead
					// (as a caller with its own factors would).
					p, err = NewPlan(context.Background(), m, svd.Policy{Rank: 1}, kind, PlanOptions{})
					if err == nil {
						exactFactors(p, kind)
					}
				}
				if err != nil {
					t.Fatal(err)
				}
				compareOutputs(t, kind.String(), runFeed(t, save(t, mustApply(t, m, p), "full.onnx"), feed), want, 1e-4)
			})
		}
	}
}

// imageNetReference loads the ImageNet-shaped model file and runs it in
// ONNX Runtime on standard-normal input of the given shape (seed 4): it
// returns the model, the input feed and ONNX Runtime's outputs.
func imageNetReference(t *testing.T, file string, shape []int64) (*onnxpb.ModelProto, map[string]ortrun.Tensor, map[string]ortrun.Tensor) {
	t.Helper()
	path := testutil.ImageNetModel(t, file)
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	feed := map[string]ortrun.Tensor{m.Graph.Input[0].Name: {Shape: shape, Data: randomInput(rand.New(rand.NewSource(4)), shape...)}}
	return m, feed, runFeed(t, path, feed)
}

// exactFactors replaces the factors of every candidate in p by the exact
// rank-C factorization A = I, B = W - R of its (BN-folded) weight.
func exactFactors(p *Plan, kind svd.ResidualKind) {
	for i := range p.Layers {
		l := &p.Layers[i]
		c := l.Channels
		f := &svd.Factors{A: make([]float32, c*c), B: append([]float32(nil), l.W...), Rank: c, In: c, Out: c, Residual: kind}
		for j := 0; j < c; j++ {
			f.A[j*c+j] = 1
			if kind.Type == svd.Identity {
				f.B[j*c+j]--
			}
		}
		l.Replace, l.Rank, l.Factors = true, c, f
	}
}
