package sweep

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/pipeline"
	"github.com/lprconv/lprconv/svd"
)

// invertedBlock is a small MobileNetV2-like model: a 3x3 stem (3 -> c), a
// 1x1 expansion c -> 4c with a folded BatchNormalization and Relu, a
// depthwise 3x3, a 1x1 projection 4c -> c with bias, a residual Add, and a
// square 1x1 c -> c. Input 1x3x8x8 (batch dynamic).
func invertedBlock(c int64) *onnxpb.ModelProto {
	rng := rand.New(rand.NewSource(3))
	var inits []*onnxpb.TensorProto
	var nodes []*onnxpb.NodeProto
	tensor := func(name string, scale, offset float64, dims ...int64) string {
		n := int64(1)
		for _, d := range dims {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(offset + scale*rng.NormFloat64())
		}
		inits = append(inits, onnxio.NewFloat32(name, dims, v))
		return name
	}
	node := func(op, out string, in []string, attrs ...*onnxpb.AttributeProto) string {
		nodes = append(nodes, &onnxpb.NodeProto{OpType: op, Name: out, Input: in, Output: []string{out}, Attribute: attrs})
		return out
	}
	ints := func(name string, v ...int64) *onnxpb.AttributeProto {
		return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INTS, Ints: v}
	}
	group := &onnxpb.AttributeProto{Name: "group", Type: onnxpb.AttributeProto_INT, I: 4 * c}
	x := node("Conv", "stem", []string{"x", tensor("w_stem", 0.4, 0, c, 3, 3, 3)}, ints("pads", 1, 1, 1, 1))
	e := node("Conv", "expand", []string{x, tensor("w_expand", 0.3, 0, 4*c, c, 1, 1)})
	e = node("BatchNormalization", "bn", []string{e, tensor("g", 0.1, 1, 4*c), tensor("beta", 0.1, 0, 4*c),
		tensor("mu", 0.1, 0, 4*c), tensor("var", 0.1, 1, 4*c)})
	e = node("Relu", "relu", []string{e})
	e = node("Conv", "dw", []string{e, tensor("w_dw", 0.4, 0, 4*c, 1, 3, 3)}, group, ints("pads", 1, 1, 1, 1))
	y := node("Conv", "project", []string{e, tensor("w_project", 0.3, 0, c, 4*c, 1, 1), tensor("b_project", 0.1, 0, c)})
	y = node("Add", "add", []string{y, x})
	y = node("Conv", "square", []string{y, tensor("w_square", 0.3, 0, c, c, 1, 1)})
	info := func(name string, dims ...int64) *onnxpb.ValueInfoProto {
		shape := &onnxpb.TensorShapeProto{}
		for i, d := range dims {
			dim := &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}}
			if i == 0 {
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}
			}
			shape.Dim = append(shape.Dim, dim)
		}
		return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxio.Float), Shape: shape}}}}
	}
	return &onnxpb.ModelProto{IrVersion: 7, ProducerName: "lprconv-test", OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 13}},
		Graph: &onnxpb.GraphProto{Name: "inverted", Node: nodes, Initializer: inits,
			Input: []*onnxpb.ValueInfoProto{info("x", 1, 3, 8, 8)}, Output: []*onnxpb.ValueInfoProto{info(y, 1, c, 8, 8)}}}
}

// TestPipelineNonSquare sweeps a model with expand/project 1x1 layers:
// with Candidates.NonSquare they get spectra over min(C_out, C_in) values
// (the singular values of their BN-folded weights) and are replaced, with
// budgets too; without it only the square layer is, and a budget that
// needs the others cannot be met.
func TestPipelineNonSquare(t *testing.T) {
	const c = 16
	path := filepath.Join(t.TempDir(), "inverted.onnx")
	if err := onnxio.Save(path, invertedBlock(c), onnxio.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, nonSquare := range []bool{false, true} {
		t.Run(fmt.Sprintf("nonsquare=%v", nonSquare), func(t *testing.T) {
			var log strings.Builder
			p, err := NewPipeline(PipelineOptions{Model: path, Random: 8, Threads: 2, Seed: 1, Multiple: 1, ChannelAlign: 4,
				Candidates: convert.CandidateOptions{NonSquare: nonSquare}, SpectrumResidual: svd.KindDiag, Log: &log})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			orig, err := p.Original(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wantLayers := []string{"square"}
			if nonSquare {
				wantLayers = []string{"expand", "project", "square"}
			}
			var names []string
			for _, s := range orig.Spectra {
				names = append(names, s.Name)
			}
			if !reflect.DeepEqual(names, wantLayers) {
				t.Fatalf("spectra of %v, want %v", names, wantLayers)
			}
			// Reference singular values of the non-square layers' folded
			// weights, from gonum's SVD.
			plan, err := convert.NewPlan(ctx, p.orig, svd.Policy{Ratio: 1, Multiple: 1}, svd.KindNone,
				convert.PlanOptions{Candidates: convert.CandidateOptions{NonSquare: nonSquare}})
			if err != nil {
				t.Fatal(err)
			}
			for i, l := range plan.Layers {
				s := orig.Spectra[i]
				if s.C != min(l.Channels, l.InputChannels()) || len(s.Singular) != s.C {
					t.Errorf("%s: C=%d with %d values, want %d", l.Name, s.C, len(s.Singular), min(l.Channels, l.InputChannels()))
				}
				if !l.NonSquare() {
					continue
				}
				w := make([]float64, len(l.W))
				for j, v := range l.W {
					w[j] = float64(v)
				}
				var ref mat.SVD
				if !ref.Factorize(mat.NewDense(l.Channels, l.InputChannels(), w), mat.SVDNone) {
					t.Fatal("reference SVD failed")
				}
				want := ref.Values(nil)
				for j := range s.Singular {
					if math.Abs(s.Singular[j]-want[j]) > 1e-5*want[0] {
						t.Errorf("%s: singular value %d = %v, want %v", l.Name, j, s.Singular[j], want[j])
						break
					}
				}
			}

			dir := t.TempDir()
			for _, cfg := range []Config{{Residual: "diag", Ratio: 0.25}, {Residual: "diag", Budget: pipeline.Budget{Fraction: 0.7}},
				{Residual: "diag", Budget: pipeline.Budget{Fraction: 0.8}}} {
				row, err := p.Evaluate(ctx, cfg, filepath.Join(dir, cfg.ModelFile(path)))
				if cfg.HasBudget() && !nonSquare {
					// The square layer alone cannot save 30% of the model.
					var inf *pipeline.InfeasibleError
					if !errors.As(err, &inf) {
						t.Errorf("%s without non-square layers: err = %v, want an infeasible budget", cfg.Name(), err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]int{}
				for _, l := range row.Layers {
					got[l.Name] = l.Rank
				}
				if cfg.Ratio > 0 {
					// Rank ceil(C/4) of min(C_out, C_in) = c for every layer.
					want := map[string]int{}
					for _, n := range wantLayers {
						want[n] = c / 4
					}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("%s: ranks %v, want %v", cfg.Name(), got, want)
					}
				} else if row.ParamsRatio > cfg.Budget.Fraction || got["expand"] == 0 && got["project"] == 0 {
					t.Errorf("%s: params ratio %v with ranks %v", cfg.Name(), row.ParamsRatio, got)
				}
				if row.Agreement == nil || row.Cosine == nil || *row.Agreement < 0 || *row.Agreement > 1 || !(*row.Cosine > 0) {
					t.Errorf("%s: agreement %v cosine %v", cfg.Name(), row.Agreement, row.Cosine)
				}
			}
			// The sensitivities are measured once for both budgets.
			if n := strings.Count(log.String(), "measuring per-layer sensitivity"); n != 1 {
				t.Errorf("sensitivity measured %d times for two budgets, want once:\n%s", n, log.String())
			}
		})
	}
}
