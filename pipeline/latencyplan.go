package pipeline

import (
	"context"
	"fmt"
	"maps"
	"math"
	"time"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/fastform"
	"github.com/lprconv/lprconv/internal/checked"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// maxPlanningTime bounds the whole-model rounds of latency-aware planning;
// past it, planning stops and the result says the model is still slower.
const maxPlanningTime = 60 * time.Second

// isolatedMACs bounds the work of one run of a layer timed alone (a few
// milliseconds on one core); see isolatedBatch.
const isolatedMACs = 400_000_000

// isolatedBatch returns the batch size at which a layer of macs MACs per
// image is timed alone for batch size b: b, or the largest smaller one
// whose run stays within isolatedMACs. A 1x1 convolution that large is
// bound by arithmetic, so its time, and the module's, grow in proportion
// to the batch and their ratio stays; this keeps timing ImageNet-sized
// layers at batch 64 to a fraction of a second. The whole-model check
// still runs at b.
func isolatedBatch(macs, b int64) int64 {
	if macs <= 0 || checked.SatMul(macs, b) <= isolatedMACs {
		return b
	}
	return max(1, isolatedMACs/macs)
}

// planLatency makes plan latency-aware (unless Latency.KeepSlower): it
// times each replaced layer alone against its LPR module alone at every
// measured batch size (two one-layer models, Conv -> Relu and the module,
// at the layer's input shape; large layers at a smaller batch size, see
// isolatedBatch) and keeps the layers whose module is not measurably
// faster at every batch size (see layerVerdict). Then it times the whole
// compressed model against the original; while it is clearly slower than
// 1 + latencyTolerance at a batch size (the low end of the ratio's 95%
// interval above it too), it keeps the replaced layer whose module saved
// the least and measures again. A whole model slower by its median alone
// is measured a second time and kept as planned unless that measurement
// is clearly slower: only clear evidence overrides the layers' own
// measurements. Kept layers are decided through the plan's Selection (a
// rank of 0 with the measured reason), so that the plan shows them. On a
// measuring error the plan stays as it was and r.Latency says why.
func planLatency(ctx context.Context, lr *latencyRun, o *Options, r *Result, rule svd.Policy, po convert.PlanOptions, plan *convert.Plan) (*convert.Plan, error) {
	if lr == nil || lr.o.KeepSlower || plan.Replaced() == 0 {
		return plan, nil
	}
	o.logf(StagePlan, "timing %d replaced layers alone in %s at batch %v", plan.Replaced(), lr.res.Runtime, lr.batches)
	layers, err := lr.timeLayers(o, plan)
	if err != nil {
		lr.fail(err)
		return plan, nil
	}
	lr.res.Planned, lr.res.Layers = true, layers
	o.logf(StagePlan, "timed the layers alone in %.1f s", time.Since(lr.start).Seconds())
	keep := map[string]string{}
	for _, l := range layers {
		if l.Kept {
			keep[l.Name] = l.Reason
		}
	}
	replan := func() (*convert.Plan, error) {
		if len(keep) == 0 {
			return plan, nil
		}
		p := po
		p.Select.Ranks = maps.Clone(po.Select.Ranks)
		if p.Select.Ranks == nil {
			p.Select.Ranks = map[string]convert.LayerRank{}
		}
		for name, why := range keep {
			p.Select.Ranks[name] = convert.LayerRank{Rank: 0, Reason: why}
		}
		np, err := convert.NewPlan(ctx, r.Original, rule, o.Residual, p)
		if err != nil {
			return nil, fmt.Errorf("plan %s with the layers latency keeps: %w", o.In, err)
		}
		return np, nil
	}
	cur, err := replan()
	if err != nil {
		return nil, err
	}
	started := time.Now()
	for cur.Replaced() > 0 {
		cur.Tool = o.Tool // as Run writes it, so that the final measurement can reuse this one
		m, err := convert.Apply(r.Original, cur)
		if err != nil {
			return nil, err
		}
		if m, err = asWritten(o, m); err != nil {
			return nil, err
		}
		enc, err := onnxio.Encode(m)
		if err != nil {
			lr.fail(fmt.Errorf("encode the compressed model: %w", err))
			return cur, nil
		}
		whole, err := lr.compareWhole(enc, cur.MACsBefore)
		if err != nil {
			lr.fail(err)
			return cur, nil
		}
		worst := slowest(whole)
		if worst.Ratio > 1+latencyTolerance && !clearlySlower(worst) {
			// Slower by the median but not clearly (a big model at batch
			// 64 is timed in 2 rounds, and a busy machine can slow one):
			// measure again.
			o.logf(StagePlan, "whole model %.3fx [%.3f, %.3f] the original at batch %d, not clearly slower: measuring again", worst.Ratio, worst.RatioLow, worst.RatioHigh, worst.Batch)
			if whole, err = lr.compareWhole(enc, cur.MACsBefore); err != nil {
				lr.fail(err)
				return cur, nil
			}
			worst = slowest(whole)
		}
		if !clearlySlower(worst) {
			// The layers alone measured faster; only a clearly slower
			// whole model overrides them.
			break
		}
		if time.Since(started) > maxPlanningTime {
			lr.res.Notes = append(lr.res.Notes, fmt.Sprintf("planning stopped after %s with the model still %s of the original's latency at batch %d", maxPlanningTime, worst, worst.Batch))
			break
		}
		name, gain := leastGain(layers, keep, whole)
		if name == "" {
			break
		}
		why := fmt.Sprintf("kept for the whole model: %.2fx the original's latency at batch %d with it, and it saved least alone (%.1f%%)", worst.Ratio, worst.Batch, 100*gain)
		keep[name] = why
		for i := range layers {
			if layers[i].Name == name {
				layers[i].Kept, layers[i].Reason = true, why
			}
		}
		o.logf(StagePlan, "whole model %.3fx the original at batch %d: keeping %s", worst.Ratio, worst.Batch, name)
		if cur, err = replan(); err != nil {
			return nil, err
		}
	}
	o.logf(StagePlan, "latency: %d of %d timed layers kept", len(keep), len(layers))
	if cur.Replaced() == 0 && o.FineTune != nil && !o.FineTune.OnlyReplaced {
		// Nothing left to train: write the original's layers rather than
		// fail in distillation (o.FineTune is the caller's; change a copy).
		ft := *o.FineTune
		ft.OnlyReplaced = true
		o.FineTune = &ft
		lr.res.Notes = append(lr.res.Notes, "no layer is replaced at the measured batch sizes, so nothing was fine-tuned")
	}
	return cur, nil
}

// slowest returns the comparison with the largest ratio.
func slowest(bs []BatchLatency) BatchLatency {
	w := bs[0]
	for _, b := range bs[1:] {
		if b.Ratio > w.Ratio {
			w = b
		}
	}
	return w
}

// leastGain returns the layer, among the timed layers not in keep, whose
// module saved the least time alone, as a fraction of the original whole
// model's time (the smallest over the batch sizes), or "" when none is
// left.
func leastGain(layers []LayerLatency, keep map[string]string, whole []BatchLatency) (string, float64) {
	best, bestGain := "", math.Inf(1)
	for _, l := range layers {
		if _, ok := keep[l.Name]; ok {
			continue
		}
		g := math.Inf(1)
		for i, b := range l.Batches {
			if i < len(whole) && whole[i].OriginalMs > 0 {
				g = min(g, (b.OriginalMs-b.CompressedMs)/whole[i].OriginalMs)
			}
		}
		if best == "" || g < bestGain {
			best, bestGain = l.Name, g
		}
	}
	return best, bestGain
}

// timeLayers times every replaced layer of plan alone against its module
// alone and decides whether it is kept.
func (lr *latencyRun) timeLayers(o *Options, plan *convert.Plan) ([]LayerLatency, error) {
	shapes, err := convert.InferShapes(lr.original, o.Plan.Shapes)
	if err != nil {
		return nil, fmt.Errorf("infer shapes: %w", err)
	}
	n := plan.Replaced()
	budget := max(lr.budget()*3/10/time.Duration(n*len(lr.batches)), 100*time.Millisecond)
	folded, err := foldedLayers(o, lr.original, plan)
	if err != nil {
		return nil, err
	}
	var out []LayerLatency
	for _, l := range plan.Layers {
		if !l.Replace {
			continue
		}
		h, w := inputHW(shapes.Get(l.Input).Shape, l.Pixels)
		layer, module, err := isolatedPair(lr.original, plan.Residual, l, h, w, folded[l.Name])
		if err != nil {
			return nil, fmt.Errorf("layer %q alone: %w", l.Name, err)
		}
		ll := LayerLatency{Name: l.Name}
		for _, b := range lr.batches {
			tb := isolatedBatch(l.MACsBefore, b)
			t, err := lr.timer.time(layer, module, timing{Batch: tb, Budget: budget, Warmup: 1, Sets: 1})
			if err != nil {
				return nil, fmt.Errorf("layer %q alone at batch %d: %w", l.Name, tb, err)
			}
			ll.Batches = append(ll.Batches, t.batchLatency(tb))
		}
		ll.Kept, ll.Reason = layerVerdict(ll.Batches)
		out = append(out, ll)
	}
	return out, nil
}

// layerVerdict keeps a layer unless its module measurably pays at every
// batch size: the paired ratio's 95% interval lies wholly below 1, or,
// where the time budget ended before the interval settled, its median
// lies below 1 - latencyTolerance. The reason names the batch size where
// the module paid least.
func layerVerdict(bs []BatchLatency) (bool, string) {
	pays := func(b BatchLatency) bool {
		return b.Rounds > 0 && (b.RatioHigh < 1 || b.Ratio < 1-latencyTolerance)
	}
	w := bs[0]
	for _, b := range bs[1:] {
		if pays(w) && !pays(b) || pays(w) == pays(b) && b.Ratio > w.Ratio {
			w = b
		}
	}
	if pays(w) {
		return false, ""
	}
	if w.Ratio >= 1 {
		return true, fmt.Sprintf("slower in ONNX Runtime: %.2fx at batch %d", w.Ratio, w.Batch)
	}
	return true, fmt.Sprintf("not measurably faster in ONNX Runtime: %.2fx [%.2f, %.2f] at batch %d", w.Ratio, w.RatioLow, w.RatioHigh, w.Batch)
}

// inputHW returns the spatial size of a layer's input from its inferred
// shape [N, C, H, W], or pixels x 1 when it is unknown.
func inputHW(shape []int64, pixels int64) (int64, int64) {
	if len(shape) == 4 && shape[2] > 0 && shape[3] > 0 {
		return shape[2], shape[3]
	}
	return max(pixels, 1), 1
}

// foldedLayers returns the replaced layers whose diag residual the written
// model folds into the layer before it (fastform, as asWritten applies
// it), so that timing each alone can time the module as it will run.
func foldedLayers(o *Options, original *onnxpb.ModelProto, plan *convert.Plan) (map[string]bool, error) {
	if o.KeepForms || plan.Residual.Type != svd.Diag {
		return nil, nil
	}
	m, err := convert.Apply(original, plan)
	if err != nil {
		return nil, err
	}
	_, rep, err := fastform.Rewrite(m, formOptions(o))
	if err != nil {
		return nil, fmt.Errorf("faster forms: %w", err)
	}
	// A module's Add writes the layer's output (convert.Apply); the report
	// names the Add node.
	addOut := map[string]string{}
	for _, n := range m.GetGraph().GetNode() {
		if n.GetOpType() == "Add" && len(n.GetOutput()) == 1 {
			addOut[n.GetName()] = n.GetOutput()[0]
		}
	}
	out := map[string]bool{}
	for _, f := range rep.DiagFolds {
		for _, l := range plan.Layers {
			if l.Replace && addOut[f.Add] == l.Output {
				out[l.Name] = true
			}
		}
	}
	return out, nil
}

// isolatedPair returns two one-layer models with m's opsets over an input
// x of shape [N, C_in, h, w]: Conv(x; W, b) -> Relu with the layer's
// folded weights, and the same with the Conv replaced by the layer's LPR
// module (as convert.Apply writes it). With folded (the written model
// folds the module's diag residual into the layer before it), both read x
// through a group-C 1x1 Conv, into which the module's residual is folded
// as fastform does it: the module is then timed as it will run, its
// residual added inside its second convolution.
func isolatedPair(m *onnxpb.ModelProto, residual svd.ResidualKind, l convert.LayerPlan, h, w int64, folded bool) (layer, module []byte, err error) {
	cin, cout := int64(l.InputChannels()), int64(l.Channels)
	tensor := func(c int64) *onnxpb.TypeProto {
		dim := func(v int64) *onnxpb.TensorShapeProto_Dimension {
			return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: v}}
		}
		return &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: int32(onnxpb.TensorProto_FLOAT),
			Shape: &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{
				{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}}, dim(c), dim(h), dim(w)}},
		}}}
	}
	one := &onnxpb.ModelProto{
		IrVersion:   m.GetIrVersion(),
		OpsetImport: m.GetOpsetImport(),
		Graph: &onnxpb.GraphProto{
			Name:   "one layer",
			Input:  []*onnxpb.ValueInfoProto{{Name: "x", Type: tensor(cin)}},
			Output: []*onnxpb.ValueInfoProto{{Name: "out", Type: tensor(cout)}},
			Initializer: []*onnxpb.TensorProto{
				onnxio.NewFloat32("W", []int64{cout, cin, 1, 1}, l.W),
				onnxio.NewFloat32("B", []int64{cout}, l.Bias),
			},
			Node: []*onnxpb.NodeProto{
				{OpType: "Conv", Name: l.Name, Input: []string{"x", "W", "B"}, Output: []string{"y"}},
				{OpType: "Relu", Name: l.Name + "/relu", Input: []string{"y"}, Output: []string{"out"}},
			},
		},
	}
	node := 0
	if folded {
		g := one.Graph
		ones := make([]float32, cin)
		for i := range ones {
			ones[i] = 1
		}
		g.Input[0].Name = "x0"
		g.Initializer = append(g.Initializer, onnxio.NewFloat32("P", []int64{cin, 1, 1, 1}, ones))
		g.Node = append([]*onnxpb.NodeProto{{OpType: "Conv", Name: "producer", Input: []string{"x0", "P"}, Output: []string{"x"},
			Attribute: []*onnxpb.AttributeProto{{Name: "group", Type: onnxpb.AttributeProto_INT, I: cin}}}}, g.Node...)
		node = 1
	}
	lp := l
	lp.Candidate = convert.Candidate{Name: l.Name, Node: node, Input: "x", Output: "y", Channels: l.Channels,
		InChannels: l.InChannels, Weight: "W", Bias: "B", BatchNorm: -1, Pixels: h * w}
	mod, err := convert.Apply(one, &convert.Plan{Residual: residual, Layers: []convert.LayerPlan{lp}})
	if err != nil {
		return nil, nil, err
	}
	if folded {
		if mod, _, err = fastform.Rewrite(mod, fastform.Options{}); err != nil {
			return nil, nil, err
		}
	}
	if layer, err = onnxio.Encode(one); err != nil {
		return nil, nil, err
	}
	if module, err = onnxio.Encode(mod); err != nil {
		return nil, nil, err
	}
	return layer, module, nil
}
