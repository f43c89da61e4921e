package finetune

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// FisherOptions configure ChannelFisher.
type FisherOptions struct {
	// Batch is the number of images per pass; Batches the most passes
	// (fewer when the data ends first).
	Batch, Batches int
	// Seed draws the labels ŷ from the teacher's predictions.
	Seed uint64
	// Threads for the engine (0: all cores).
	Threads int
}

// ChannelFisher measures how much each channel of the named values of the
// teacher (NCHW node outputs) matters to its output distribution: the
// diagonal of the Fisher information with respect to the value, summed
// over each channel's positions,
//
//	φ_c = E_x E_{ŷ ~ p(·|x)} [ Σ_{h,w} (∂ℓ/∂v_{c,h,w})² ],   ℓ = −log p(ŷ|x),
//
// with p = softmax of the teacher's first output, estimated on the images
// of data with one label drawn per image from the teacher's own
// prediction (no labels are read). Each value's weights are scaled to a
// mean of 1 over its channels (all 1 when every gradient is zero), ready
// for Options.ChannelWeights: to second order, the growth of the KL
// divergence between the teacher's outputs and those of a teacher whose
// value v is perturbed by δ is ½·Σ F_{ij} δ_i δ_j, and φ is the channel
// sum of F's diagonal, so an error in a high-φ channel moves the output
// more than one in a channel that nothing downstream reads.
//
// The gradients are read from a copy of the teacher in which every named
// value v is replaced, for its readers, by v + e_v with e_v a zero
// trainable tensor of v's shape, so that the engine's gradient of e_v is
// the gradient of v image by image.
func ChannelFisher(ctx context.Context, teacher *onnxpb.ModelProto, values []string, data dataset.Batches, o FisherOptions) (map[string][]float64, error) {
	return channelFisher(ctx, teacher, values, data, o, nil)
}

// channelFisher is ChannelFisher; pick, when set, replaces the random
// draw of each image's label from the teacher's probabilities p (tests).
func channelFisher(ctx context.Context, teacher *onnxpb.ModelProto, values []string, data dataset.Batches, o FisherOptions, pick func(p []float64) int) (map[string][]float64, error) {
	if o.Batch < 1 || o.Batches < 1 {
		return nil, fmt.Errorf("fisher: batch %d and batches %d must be positive", o.Batch, o.Batches)
	}
	if len(values) == 0 {
		return map[string][]float64{}, nil
	}
	in, err := evaluate.ModelInput(teacher)
	if err != nil {
		return nil, fmt.Errorf("fisher: %w", err)
	}
	if in.Batch > 0 && in.Batch != o.Batch {
		return nil, fmt.Errorf("fisher: input %q has a fixed batch size of %d; use batch %d or export the model with a dynamic batch", in.Name, in.Batch, in.Batch)
	}
	produced := producedValues(teacher)
	for _, v := range values {
		if !produced[v] {
			return nil, fmt.Errorf("fisher: %q is not computed by a node of the teacher", v)
		}
		for _, out := range teacher.GetGraph().GetOutput() {
			if out.GetName() == v {
				return nil, fmt.Errorf("fisher: %q is a graph output", v)
			}
		}
	}
	shape := []int{o.Batch, in.Channels, in.Height, in.Width}
	x := make([]float32, o.Batch*in.Channels*in.Height*in.Width)
	labels := make([]int, o.Batch)
	if n, err := data.Next(x, labels); err != nil || n < o.Batch {
		if err == nil || errors.Is(err, io.EOF) {
			err = fmt.Errorf("the data holds fewer than %d images", o.Batch)
		}
		return nil, fmt.Errorf("fisher: %w", err)
	}
	batch := engine.NewTensorF(x, shape...)
	shapes, err := valueShapes(teacher, in.Name, batch, values, o.Threads)
	if err != nil {
		return nil, err
	}
	probed, probes := withProbes(teacher, values, shapes)
	prog, err := engine.Compile(probed, engine.Options{Threads: o.Threads, InputShapes: map[string][]int{in.Name: shape}, Trainable: probes, KeepForBackward: true})
	if err != nil {
		return nil, fmt.Errorf("fisher: %w", err)
	}
	defer prog.Close()
	if pick == nil {
		rng := rand.New(rand.NewPCG(o.Seed, 0x66697368))
		pick = func(p []float64) int { return drawFrom(p, rng.Float64()) }
	}
	out := prog.OutputNames()[0]
	sums := make([][]float64, len(values))
	for i, v := range values {
		sums[i] = make([]float64, shapes[v][1])
	}
	var dz *engine.Tensor
	for b := 0; b < o.Batches; b++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if b > 0 {
			n, err := data.Next(x, labels)
			if errors.Is(err, io.EOF) || (err == nil && n < o.Batch) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("fisher: %w", err)
			}
		}
		if err := prog.Forward(map[string]*engine.Tensor{in.Name: batch}); err != nil {
			return nil, fmt.Errorf("fisher: %w", err)
		}
		z := prog.Value(out)
		if dz == nil {
			dz = engine.NewTensor(z.Shape...)
		}
		sampledNLLGrad(z.F, o.Batch, pick, dz.F)
		if err := prog.Backward(map[string]*engine.Tensor{out: dz}); err != nil {
			return nil, fmt.Errorf("fisher: %w", err)
		}
		for i, v := range values {
			g := prog.Grad(probes[i])
			c := shapes[v][1]
			hw := len(g) / (o.Batch * c)
			for j, gv := range g {
				sums[i][(j/hw)%c] += float64(gv) * float64(gv)
			}
		}
	}
	res := make(map[string][]float64, len(values))
	for i, v := range values {
		res[v] = unitMean(sums[i])
	}
	return res, nil
}

// valueShapes runs the teacher once on batch to read the shapes of values,
// which must be NCHW.
func valueShapes(teacher *onnxpb.ModelProto, input string, batch *engine.Tensor, values []string, threads int) (map[string][]int, error) {
	p, err := engine.Compile(teacher, engine.Options{Threads: threads, InputShapes: map[string][]int{input: batch.Shape}, Outputs: values})
	if err != nil {
		return nil, fmt.Errorf("fisher: %w", err)
	}
	defer p.Close()
	if err := p.Forward(map[string]*engine.Tensor{input: batch}); err != nil {
		return nil, fmt.Errorf("fisher: %w", err)
	}
	shapes := map[string][]int{}
	for _, v := range values {
		t := p.Value(v)
		if t == nil || len(t.Shape) != 4 || t.Shape[0] != batch.Shape[0] || t.DType != engine.Float32 {
			return nil, fmt.Errorf("fisher: %q is not a float NCHW tensor with one image per batch row", v)
		}
		shapes[v] = append([]int(nil), t.Shape...)
	}
	return shapes, nil
}

// withProbes returns a copy of m in which the readers of each value v read
// v + e_v instead, e_v a zero initializer of v's shape, and the names of
// the e_v in values order.
func withProbes(m *onnxpb.ModelProto, values []string, shapes map[string][]int) (*onnxpb.ModelProto, []string) {
	c := proto.Clone(m).(*onnxpb.ModelProto)
	g := c.Graph
	names := onnxio.GraphNames(g)
	probe, sum := map[string]string{}, map[string]string{}
	var probes []string
	for _, v := range values {
		probe[v], sum[v] = names.Fresh(v+"/fisher_probe"), names.Fresh(v+"/fisher_probed")
		probes = append(probes, probe[v])
		s := shapes[v]
		dims := []int64{int64(s[0]), int64(s[1]), int64(s[2]), int64(s[3])}
		g.Initializer = append(g.Initializer, onnxio.NewFloat32(probe[v], dims, make([]float32, s[0]*s[1]*s[2]*s[3])))
	}
	nodes := make([]*onnxpb.NodeProto, 0, len(g.Node)+len(values))
	for _, n := range g.Node {
		for i, in := range n.Input {
			if s, ok := sum[in]; ok {
				n.Input[i] = s
			}
		}
		nodes = append(nodes, n)
		for _, o := range n.Output {
			if p, ok := probe[o]; ok {
				nodes = append(nodes, &onnxpb.NodeProto{OpType: "Add", Name: p + "/add", Input: []string{o, p}, Output: []string{sum[o]}})
			}
		}
	}
	g.Node = nodes
	return c, probes
}

// sampledNLLGrad writes, for each of the batch rows of logits z, the
// gradient of −log softmax(z)_ŷ with respect to z, softmax(z) − e_ŷ, with
// ŷ = pick(softmax(z)).
func sampledNLLGrad(z []float32, batch int, pick func(p []float64) int, dz []float32) {
	classes := len(z) / batch
	p := make([]float64, classes)
	for i := range batch {
		row := z[i*classes : (i+1)*classes]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		s := 0.0
		for k, v := range row {
			p[k] = math.Exp(float64(v) - mx)
			s += p[k]
		}
		for k := range p {
			p[k] /= s
		}
		y := pick(p)
		for k := range p {
			d := p[k]
			if k == y {
				d--
			}
			dz[i*classes+k] = float32(d)
		}
	}
}

// drawFrom returns the class k whose cumulative probability interval
// holds u ∈ [0, 1).
func drawFrom(p []float64, u float64) int {
	for k, pk := range p {
		if u < pk {
			return k
		}
		u -= pk
	}
	return len(p) - 1
}

// unitMean scales v to a mean of 1 (all 1 when v sums to zero).
func unitMean(v []float64) []float64 {
	mean := 0.0
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = 1
		if mean > 0 {
			out[i] = x / mean
		}
	}
	return out
}

// MatchedValues returns the feature values that specs match between
// teacher and student (the logits excluded), as Distill resolves them:
// the names Options.ChannelWeights can weigh.
func MatchedValues(teacher, student *onnxpb.ModelProto, specs []MatchSpec) ([]string, error) {
	ob, err := resolveMatch(teacher, student, specs)
	if err != nil {
		return nil, err
	}
	return ob.names(), nil
}

// FisherMaxRankFraction is the largest rank, as a fraction of its
// channels, of an LPR module whose output FisherValues weighs. Where the
// rank keeps at most a quarter of the channels, which output directions
// the factors keep decides the error, and weighing them by the teacher's
// sensitivity pays; where it keeps more, there is capacity for every
// channel and the weights only take attention from the low-φ ones
// (bench/finetune/RESULTS.md, seventh round: at 1,000 images,
// ShuffleNetV2 with exact ranks r = C/4 +0.10 to +0.25 over 3 seeds,
// MobileNetV1 (r = C/4) +0.04 to +0.11, ShuffleNetV2 with default ranks
// (r = 2C/3 and C/3) −0.06 to −0.10 when weighted). Options.LowRankLRBoost
// uses the same line.
const FisherMaxRankFraction = 0.25

// FisherValues returns the values of matched that ChannelFisher's weights
// should weigh for plan: every value that is not the output of one of
// plan's replaced layers, and the outputs of those whose rank r satisfies
// r ≤ FisherMaxRankFraction·C.
func FisherValues(plan *convert.Plan, matched []string) []string {
	rankFrac := map[string]float64{}
	for _, l := range plan.Layers {
		if l.Replace && l.Factors != nil && l.Channels > 0 {
			rankFrac[l.Output] = float64(l.Factors.Rank) / float64(l.Channels)
		}
	}
	var out []string
	for _, v := range matched {
		if f, ok := rankFrac[v]; !ok || f <= FisherMaxRankFraction {
			out = append(out, v)
		}
	}
	return out
}
