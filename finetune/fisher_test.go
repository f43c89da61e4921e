package finetune

import (
	"context"
	"io"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// TestChannelFeatureLossGradient checks ChannelFeatureLoss against finite
// differences, against FeatureLoss with unit weights, and that a channel
// of weight 0 contributes nothing.
func TestChannelFeatureLossGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	const n, c, hw = 2, 3, 4
	s := make([]float32, n*c*hw)
	q := make([]float32, n*c*hw)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
		q[i] = float32(rng.NormFloat64())
	}
	chw := []float32{0.5, 2, 0}
	grad := make([]float32, len(s))
	ChannelFeatureLoss(s, q, 0.7, chw, hw, grad)
	scratch := make([]float32, len(s))
	for i := range s {
		const h = 1e-2
		orig := s[i]
		s[i] = orig + h
		up := ChannelFeatureLoss(s, q, 0.7, chw, hw, scratch)
		s[i] = orig - h
		down := ChannelFeatureLoss(s, q, 0.7, chw, hw, scratch)
		s[i] = orig
		fd := (up - down) / (2 * h)
		if math.Abs(fd-float64(grad[i])) > 2e-3*math.Max(1, math.Abs(fd)) {
			t.Errorf("d/ds[%d] = %v, finite difference %v", i, grad[i], fd)
		}
		if (i/hw)%c == 2 && grad[i] != 0 {
			t.Errorf("channel of weight 0: gradient %v at %d", grad[i], i)
		}
	}
	ones := []float32{1, 1, 1}
	g1, g2 := make([]float32, len(s)), make([]float32, len(s))
	a, b := ChannelFeatureLoss(s, q, 0.7, ones, hw, g1), FeatureLoss(s, q, 0.7, g2)
	if math.Abs(a-b) > 1e-12*math.Abs(b) || !slices.Equal(g1, g2) {
		t.Errorf("unit weights: loss %v, FeatureLoss %v", a, b)
	}
}

// fisherModel is x[N,2,2,2] -> Conv 1x1 (3 out) -> v -> GlobalAveragePool
// -> Flatten -> Gemm (4 classes) -> logits, with its weights.
func fisherModel(t *testing.T) (*onnxpb.ModelProto, []float32, []float32) {
	t.Helper()
	w1 := []float32{1, -0.5, 0.3, 2, -1, 0.25}                                // 3x2
	wc := []float32{0.5, -1, 2, 1.5, 0.25, -0.75, -2, 1, 0.5, 0.1, -0.3, 0.9} // 4x3
	m := &onnxpb.ModelProto{IrVersion: 7, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 13}}, Graph: &onnxpb.GraphProto{
		Name: "fisher",
		Node: []*onnxpb.NodeProto{
			{OpType: "Conv", Name: "conv", Input: []string{"x", "w1"}, Output: []string{"v"}},
			{OpType: "GlobalAveragePool", Name: "gap", Input: []string{"v"}, Output: []string{"g"}},
			{OpType: "Flatten", Name: "flat", Input: []string{"g"}, Output: []string{"f"}},
			{OpType: "Gemm", Name: "fc", Input: []string{"f", "wc"}, Output: []string{"logits"},
				Attribute: []*onnxpb.AttributeProto{{Name: "transB", Type: onnxpb.AttributeProto_INT, I: 1}}},
		},
		Initializer: []*onnxpb.TensorProto{onnxio.NewFloat32("w1", []int64{3, 2, 1, 1}, w1), onnxio.NewFloat32("wc", []int64{4, 3}, wc)},
		Input:       []*onnxpb.ValueInfoProto{floatInfo("x", -1, 2, 2, 2)},
		Output:      []*onnxpb.ValueInfoProto{floatInfo("logits", -1, 4)},
	}}
	return m, w1, wc
}

// samples is a Batches source over fixed images.
type samples struct {
	x    [][]float32
	next int
}

func (s *samples) Next(dst []float32, labels []int) (int, error) {
	per := len(s.x[0])
	n := 0
	for n*per < len(dst) && s.next < len(s.x) {
		copy(dst[n*per:], s.x[s.next])
		labels[n] = -1
		n++
		s.next++
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// TestChannelFisher checks ChannelFisher's weights against the analytic
// gradient of a linear head: with the labels drawn as the argmax,
// ∂ℓ/∂v_{n,c,h,w} = Σ_k Wc[k,c]·(p_k − [k = ŷ]) / (H·W), squared, summed
// over images and positions and scaled to mean 1.
func TestChannelFisher(t *testing.T) {
	m, w1, wc := fisherModel(t)
	rng := rand.New(rand.NewSource(4))
	var imgs [][]float32
	for range 6 {
		x := make([]float32, 8)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		imgs = append(imgs, x)
	}
	argmax := func(p []float64) int { return slices.Index(p, slices.Max(p)) }
	got, err := channelFisher(context.Background(), m, []string{"v"}, &samples{x: imgs}, FisherOptions{Batch: 2, Batches: 3, Threads: 1}, argmax)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float64, 3)
	for _, x := range imgs {
		// pooled v per channel: mean over the 4 positions of W1·x
		var f [3]float64
		for c := range 3 {
			for pos := range 4 {
				f[c] += (float64(w1[2*c])*float64(x[pos]) + float64(w1[2*c+1])*float64(x[4+pos])) / 4
			}
		}
		z := make([]float64, 4)
		for k := range 4 {
			for c := range 3 {
				z[k] += float64(wc[3*k+c]) * f[c]
			}
		}
		p := make([]float64, 4)
		s := 0.0
		for k := range z {
			p[k] = math.Exp(z[k])
			s += p[k]
		}
		for k := range p {
			p[k] /= s
		}
		y := argmax(p)
		for c := range 3 {
			g := 0.0
			for k := range 4 {
				d := p[k]
				if k == y {
					d--
				}
				g += float64(wc[3*k+c]) * d / 4
			}
			want[c] += 4 * g * g
		}
	}
	want = unitMean(want)
	for c := range want {
		if math.Abs(got["v"][c]-want[c]) > 1e-4*want[c]+1e-6 {
			t.Errorf("channel %d: weight %v, want %v", c, got["v"][c], want[c])
		}
	}
	mean := (got["v"][0] + got["v"][1] + got["v"][2]) / 3
	if math.Abs(mean-1) > 1e-12 {
		t.Errorf("weights %v have mean %v, want 1", got["v"], mean)
	}

	// the seeded draw is deterministic
	opts := FisherOptions{Batch: 3, Batches: 2, Seed: 7, Threads: 1}
	a, err := ChannelFisher(context.Background(), m, []string{"v"}, &samples{x: imgs}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ChannelFisher(context.Background(), m, []string{"v"}, &samples{x: imgs}, opts)
	if err != nil || !slices.Equal(a["v"], b["v"]) {
		t.Errorf("same seed: %v and %v (%v)", a["v"], b["v"], err)
	}

	bad := []struct {
		name   string
		values []string
		o      FisherOptions
		data   []([]float32)
	}{
		{"not computed", []string{"x"}, FisherOptions{Batch: 2, Batches: 1}, imgs},
		{"unknown", []string{"nope"}, FisherOptions{Batch: 2, Batches: 1}, imgs},
		{"graph output", []string{"logits"}, FisherOptions{Batch: 2, Batches: 1}, imgs},
		{"not NCHW", []string{"f"}, FisherOptions{Batch: 2, Batches: 1}, imgs},
		{"no batch", []string{"v"}, FisherOptions{Batch: 0, Batches: 1}, imgs},
		{"too few images", []string{"v"}, FisherOptions{Batch: 8, Batches: 1}, imgs},
	}
	fixed, _, _ := fisherModel(t)
	fixed.Graph.Input[0] = floatInfo("x", 1, 2, 2, 2)
	if _, err := ChannelFisher(context.Background(), fixed, []string{"v"}, &samples{x: imgs}, FisherOptions{Batch: 2, Batches: 1}); err == nil || !strings.Contains(err.Error(), "fixed batch size of 1") {
		t.Errorf("fixed batch 1, batch 2: %v", err)
	}
	for _, tc := range bad {
		if _, err := ChannelFisher(context.Background(), m, tc.values, &samples{x: tc.data}, tc.o); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

// TestDrawFrom checks the inverse-CDF draw.
func TestDrawFrom(t *testing.T) {
	p := []float64{0.2, 0.5, 0.3}
	for _, tc := range []struct {
		u    float64
		want int
	}{{0, 0}, {0.19, 0}, {0.2, 1}, {0.69, 1}, {0.71, 2}, {0.999, 2}, {1.5, 2}} {
		if got := drawFrom(p, tc.u); got != tc.want {
			t.Errorf("u %v: class %d, want %d", tc.u, got, tc.want)
		}
	}
}

// TestDistillChannelWeights checks that Distill applies
// Options.ChannelWeights: with every module's channels weighed 2, the
// first step's module loss is twice the unweighted one, and weights of
// the wrong length are an error.
func TestDistillChannelWeights(t *testing.T) {
	teacher, plan := lprFixture(t)
	student, err := convert.Apply(teacher, plan)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := ParseMatch("modules")
	if err != nil {
		t.Fatal(err)
	}
	names, err := MatchedValues(teacher, student, specs)
	if err != nil || len(names) == 0 {
		t.Fatalf("matched values %v (%v)", names, err)
	}
	channels := map[string]int{}
	for _, l := range plan.Layers {
		channels[l.Output] = l.Channels
	}
	loss := func(w map[string][]float64) (float64, error) {
		opts := distillOpts(1)
		opts.Match, opts.ChannelWeights, opts.Threads = specs, w, 1
		_, rep, err := Distill(context.Background(), teacher, student, Data{Train: loader(t, "train", 100, 50, false)}, opts)
		if err != nil {
			return 0, err
		}
		return rep.FinalLoss, nil
	}
	plain, err := loss(nil)
	if err != nil {
		t.Fatal(err)
	}
	twos := map[string][]float64{}
	for _, n := range names {
		twos[n] = slices.Repeat([]float64{2}, channels[n])
	}
	doubled, err := loss(twos)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(doubled-2*plain) > 1e-6*plain {
		t.Errorf("weights 2: loss %v, want 2 x %v", doubled, plain)
	}
	short := map[string][]float64{names[0]: {1}}
	if _, err := loss(short); err == nil {
		t.Error("one weight for a value of many channels: no error")
	}
}

// floatInfo is a float tensor's value info (-1: a dynamic dimension).
func floatInfo(name string, dims ...int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}}
		if d < 0 {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxio.Float), Shape: shape}}}}
}

// TestFisherValues checks which matched values the rank rule keeps.
func TestFisherValues(t *testing.T) {
	layer := func(out string, c, r int, replace bool) convert.LayerPlan {
		l := convert.LayerPlan{Replace: replace, Factors: &svd.Factors{Rank: r}}
		l.Output, l.Channels = out, c
		return l
	}
	plan := &convert.Plan{Layers: []convert.LayerPlan{
		layer("quarter", 24, 6, true),     // r = C/4: weighed
		layer("below", 96, 16, true),      // r < C/4: weighed
		layer("third", 48, 16, true),      // r = C/3: not weighed
		layer("two-thirds", 24, 16, true), // not weighed
		layer("kept", 32, 32, false),      // not a module: its value is weighed
	}}
	got := FisherValues(plan, []string{"quarter", "below", "third", "two-thirds", "kept", "penultimate"})
	want := []string{"quarter", "below", "kept", "penultimate"}
	if !slices.Equal(got, want) {
		t.Errorf("FisherValues = %v, want %v", got, want)
	}
}
