package fastform

import (
	"slices"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/shapeinfer"
)

// shuffle is one channel shuffle to rewrite: Concat(x₁…x_g, axis 1) →
// Reshape → Transpose(0, 2, 1, 3, 4).
type shuffle struct {
	concat, reshape, transpose *onnxpb.NodeProto
}

// findShuffles returns the channel shuffles whose intermediate values are
// read by nothing else and whose Reshape splits the channel axis into
// [g, c] at every sampled size (shapes, from shapefold.InferAt: distinct
// free dimensions get distinct sizes in some samples, so a target that
// copies W into H's place does not match).
func findShuffles(ix *graphIndex, shapes []*shapeinfer.Shapes) []shuffle {
	var out []shuffle
	for _, t := range ix.g.GetNode() {
		if t.GetOpType() != "Transpose" || !onnxio.IsDefaultDomain(t) || len(t.GetInput()) != 1 || len(t.GetOutput()) != 1 {
			continue
		}
		if perm, _ := onnxio.AttrInts(t, "perm"); !slices.Equal(perm, []int64{0, 2, 1, 3, 4}) {
			continue
		}
		r := ix.Producer[t.GetInput()[0]]
		if r == nil || r.GetOpType() != "Reshape" || !onnxio.IsDefaultDomain(r) || len(r.GetInput()) != 2 || ix.Inits[r.GetInput()[1]] == nil || ix.Inputs[r.GetInput()[1]] {
			continue
		}
		c := ix.Producer[r.GetInput()[0]]
		if c == nil || c.GetOpType() != "Concat" || !onnxio.IsDefaultDomain(c) || len(c.GetInput()) < 2 {
			continue
		}
		if !ix.only(c.GetOutput()[0], r) || !ix.only(r.GetOutput()[0], t) {
			continue
		}
		if !shuffleShapes(c, r, shapes) {
			continue
		}
		out = append(out, shuffle{concat: c, reshape: r, transpose: t})
	}
	return out
}

// shuffleShapes checks, at every sampled size, that the Concat joins g
// rank-4 tensors [N, c, H, W] along axis 1 and the Reshape makes
// [N, g, c, H, W] of the result.
func shuffleShapes(c, r *onnxpb.NodeProto, shapes []*shapeinfer.Shapes) bool {
	if len(shapes) == 0 {
		return false
	}
	g := int64(len(c.GetInput()))
	for _, s := range shapes {
		var first []int64
		for _, in := range c.GetInput() {
			v := s.Get(in)
			if v == nil || !v.Known || len(v.Shape) != 4 {
				return false
			}
			if first == nil {
				first = v.Shape
			} else if !slices.Equal(first, v.Shape) {
				return false
			}
		}
		if axis, err := shapeinfer.NormAxis(onnxio.AttrInt(c, "axis", 0), 4); err != nil || axis != 1 {
			return false
		}
		want := []int64{first[0], g, first[1], first[2], first[3]}
		v := s.Get(r.GetOutput()[0])
		if v == nil || !v.Known || !slices.Equal(v.Shape, want) {
			return false
		}
	}
	return true
}

// rewriteShuffle replaces one shuffle by Unsqueeze(axis 2) of each input and
// one Concat(axis 2) that produces the Transpose's output. It returns the
// nodes that replace the Transpose; the Concat and the Reshape are to be
// removed.
func rewriteShuffle(ix *graphIndex, s shuffle, opset int64) []*onnxpb.NodeProto {
	base := s.transpose.GetName()
	if base == "" {
		base = s.transpose.GetOutput()[0]
	}
	var axes string
	if opset >= 13 {
		axes = ix.fresh(base + "/unsqueeze_axes")
		t := onnxio.NewInt64(axes, []int64{1}, []int64{2})
		ix.g.Initializer = append(ix.g.Initializer, t)
		ix.Inits[axes] = t
	}
	var nodes []*onnxpb.NodeProto
	var parts []string
	for _, in := range s.concat.GetInput() {
		out := ix.fresh(base + "/unsqueeze_out")
		u := &onnxpb.NodeProto{OpType: "Unsqueeze", Name: ix.fresh(base + "/unsqueeze"), Output: []string{out}}
		if axes != "" {
			u.Input = []string{in, axes}
		} else {
			u.Input = []string{in}
			u.Attribute = []*onnxpb.AttributeProto{{Name: "axes", Type: onnxpb.AttributeProto_INTS, Ints: []int64{2}}}
		}
		nodes = append(nodes, u)
		parts = append(parts, out)
	}
	nodes = append(nodes, &onnxpb.NodeProto{
		OpType: "Concat", Name: ix.fresh(base + "/interleave"),
		Input: parts, Output: []string{s.transpose.GetOutput()[0]},
		Attribute: []*onnxpb.AttributeProto{{Name: "axis", Type: onnxpb.AttributeProto_INT, I: 2}},
	})
	return nodes
}
