package main

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/ortapi"
	"github.com/lprconv/lprconv/svd"
)

// runIsolated times, for every LPR candidate of the model at path, the
// layer alone against its LPR module alone: two one-layer models,
// Conv(x; W, b) -> Relu and the module convert.Apply makes of it (rank
// ratio 1/4 rounded up to a multiple of 16, diag residual, forced), on an
// input of the layer's shape at each batch size. It prints the time each
// takes and the difference, the cheap estimate of what replacing the
// layer saves in the whole model.
func runIsolated(rt *ortapi.Runtime, path string, bs []int64, timing ortapi.TimingConfig, sessions int) error {
	m, err := onnxio.Load(path)
	if err != nil {
		return err
	}
	p, err := convert.NewPlan(context.Background(), m, svd.Policy{Ratio: 0.25, Multiple: 16}, svd.ResidualKind{Type: svd.Diag}, convert.PlanOptions{Select: convert.Selection{Force: true}})
	if err != nil {
		return fmt.Errorf("plan %s: %w", path, err)
	}
	fmt.Printf("%-58s %4s %5s %5s %6s %12s %12s %10s %s\n", "layer", "C", "HxW", "rank", "batch", "layer alone", "module", "Δ", "ratio [95%]")
	for _, l := range p.Layers {
		side := int64(math.Round(math.Sqrt(float64(l.Pixels))))
		if l.Pixels <= 0 || side*side != l.Pixels {
			fmt.Printf("%-58s skipped: %d pixels is not a square\n", trim(l.Name, 58), l.Pixels)
			continue
		}
		one := oneLayer(m, l, side)
		lp, err := convert.NewPlan(context.Background(), one, svd.Policy{Ratio: 0.25, Multiple: 16}, svd.ResidualKind{Type: svd.Diag}, convert.PlanOptions{Select: convert.Selection{Force: true}})
		if err != nil {
			return fmt.Errorf("plan %s alone: %w", l.Name, err)
		}
		lpr, err := convert.Apply(one, lp)
		if err != nil {
			return fmt.Errorf("compress %s alone: %w", l.Name, err)
		}
		a, err := proto.Marshal(one)
		if err != nil {
			return err
		}
		b, err := proto.Marshal(lpr)
		if err != nil {
			return err
		}
		for _, batch := range bs {
			tm, err := rt.TimeModels([]ortapi.Model{{Bytes: a}, {Bytes: b}}, ortapi.LatencyOptions{Batch: batch, Threads: 1, Sessions: sessions, Timing: timing})
			if err != nil {
				return fmt.Errorf("%s: %w", l.Name, err)
			}
			r := tm.Ratio(1, 0)
			fmt.Printf("%-58s %4d %5d %5d %6d %12s %12s %10s %.3f [%.3f, %.3f]\n", trim(l.Name, 58), l.Channels, l.Pixels, lp.Layers[0].Rank, batch,
				tm.Median(0).Round(100*time.Nanosecond), tm.Median(1).Round(100*time.Nanosecond),
				(tm.Median(1) - tm.Median(0)).Round(100*time.Nanosecond), r.Median, r.Low, r.High)
		}
	}
	return nil
}

// oneLayer builds the model x -> Conv(x; W, b) -> Relu for the candidate
// l of m (its BatchNormalization folded into W and b), with input
// [N, C, side, side] and m's opsets.
func oneLayer(m *onnxpb.ModelProto, l convert.LayerPlan, side int64) *onnxpb.ModelProto {
	C := int64(l.Channels)
	dims := func(first *onnxpb.TensorShapeProto_Dimension) *onnxpb.TypeProto {
		return &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: int32(onnxpb.TensorProto_FLOAT),
			Shape: &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{
				first,
				{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: C}},
				{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: side}},
				{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: side}},
			}},
		}}}
	}
	n := func() *onnxpb.TensorShapeProto_Dimension {
		return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}}
	}
	name := filepath.ToSlash(l.Name)
	return &onnxpb.ModelProto{
		IrVersion:   m.IrVersion,
		OpsetImport: m.OpsetImport,
		Graph: &onnxpb.GraphProto{
			Name:   "one layer",
			Input:  []*onnxpb.ValueInfoProto{{Name: "x", Type: dims(n())}},
			Output: []*onnxpb.ValueInfoProto{{Name: "out", Type: dims(n())}},
			Initializer: []*onnxpb.TensorProto{
				onnxio.NewFloat32("W", []int64{C, C, 1, 1}, l.W),
				onnxio.NewFloat32("B", []int64{C}, l.Bias),
			},
			Node: []*onnxpb.NodeProto{
				{OpType: "Conv", Name: name, Input: []string{"x", "W", "B"}, Output: []string{"y"}},
				{OpType: "Relu", Name: name + "/relu", Input: []string{"y"}, Output: []string{"out"}},
			},
		},
	}
}
