package convert

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// foldedWeights returns the candidate's C_out x C_in weight (row-major,
// out x in) and its bias (length C_out, zeros when the Conv has none), with the
// BatchNormalization that follows it folded in when there is one:
//
//	s = gamma / sqrt(var + eps),  W' = diag(s) W,  b' = s (b - mean) + beta
//
// computed in float64 and rounded once to float32.
func foldedWeights(ix *graphIndex, c *Candidate) (w, b []float32, err error) {
	n, nin := c.Channels, c.InputChannels()
	w, _, _, err = ix.constFloats(c.Weight)
	if err != nil {
		return nil, nil, fmt.Errorf("layer %q: weight %q: %w", c.Name, c.Weight, err)
	}
	if len(w) != n*nin {
		return nil, nil, fmt.Errorf("layer %q: weight %q has %d values, want %d", c.Name, c.Weight, len(w), n*nin)
	}
	b = make([]float32, n)
	if c.Bias != "" {
		bias, _, _, err := ix.constFloats(c.Bias)
		if err != nil {
			return nil, nil, fmt.Errorf("layer %q: bias %q: %w", c.Name, c.Bias, err)
		}
		if len(bias) != n {
			return nil, nil, fmt.Errorf("layer %q: bias %q has %d values, want %d", c.Name, c.Bias, len(bias), n)
		}
		copy(b, bias)
	}
	if c.BatchNorm < 0 {
		return w, b, nil
	}
	bn := ix.g.GetNode()[c.BatchNorm]
	var p [4][]float32 // scale, B, mean, var
	for i := range p {
		v, _, _, err := ix.constFloats(input(bn, i+1))
		if err != nil {
			return nil, nil, fmt.Errorf("layer %q: %s input %q: %w", c.Name, nodeLabel(bn), input(bn, i+1), err)
		}
		if len(v) != n {
			return nil, nil, fmt.Errorf("layer %q: %s input %q has %d values, want %d", c.Name, nodeLabel(bn), input(bn, i+1), len(v), n)
		}
		p[i] = v
	}
	eps := float64(attrFloat(bn, "epsilon", 1e-5))
	fw := make([]float32, n*nin)
	for o := 0; o < n; o++ {
		s := float64(p[0][o]) / math.Sqrt(float64(p[3][o])+eps)
		for i := 0; i < nin; i++ {
			fw[o*nin+i] = float32(float64(w[o*nin+i]) * s)
		}
		b[o] = float32((float64(b[o])-float64(p[2][o]))*s + float64(p[1][o]))
	}
	return fw, b, nil
}

// FoldBatchNorm returns a copy of m in which every BatchNormalization that
// directly follows an LPR candidate Conv (and is that Conv's only
// consumer) is folded into the Conv's weight and bias; the Conv then
// writes the BatchNormalization's output. It also returns how many were
// folded. Other BatchNormalization nodes are left alone.
func FoldBatchNorm(m *onnxpb.ModelProto) (*onnxpb.ModelProto, int, error) {
	out := proto.Clone(m).(*onnxpb.ModelProto)
	g := out.GetGraph()
	if g == nil {
		return nil, 0, fmt.Errorf("model has no graph")
	}
	ix := newGraphIndex(g)
	used := onnxio.GraphNames(g)
	removed := map[int]bool{}
	folded := 0
	for i := range g.GetNode() {
		c, _ := candidateCheck(ix, i)
		if c == nil || c.BatchNorm < 0 {
			continue
		}
		w, b, err := foldedWeights(ix, c)
		if err != nil {
			return nil, 0, err
		}
		conv := g.Node[i]
		wName, bName := used.Fresh(c.Name+"/folded.weight"), used.Fresh(c.Name+"/folded.bias")
		g.Initializer = append(g.Initializer,
			onnxio.NewFloat32(wName, []int64{int64(c.Channels), int64(c.Channels), 1, 1}, w),
			onnxio.NewFloat32(bName, []int64{int64(c.Channels)}, b))
		conv.Input = []string{c.Input, wName, bName}
		conv.Output = []string{c.Output}
		removed[c.BatchNorm] = true
		folded++
	}
	if folded > 0 {
		keep := g.Node[:0]
		for i, n := range g.Node {
			if !removed[i] {
				keep = append(keep, n)
			}
		}
		g.Node = keep
		pruneDead(m.GetGraph(), g)
	}
	return out, folded, nil
}
