package convert

import (
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// pruneDead removes from g what the rewrite left without a consumer: nodes
// whose outputs are all unused (when they were used in the original graph
// orig), initializers that orig's nodes read but g's do not (with their
// graph-input entries), and value_info of tensors no longer produced.
// Anything already unused in orig is kept as it was.
func pruneDead(orig, g *onnxpb.GraphProto) {
	usedBefore := map[string]bool{}
	for _, n := range orig.GetNode() {
		for _, in := range n.GetInput() {
			usedBefore[in] = true
		}
	}
	outputs := map[string]bool{}
	for _, v := range g.GetOutput() {
		outputs[v.GetName()] = true
	}
	for {
		used := map[string]bool{}
		for _, n := range g.GetNode() {
			for _, in := range n.GetInput() {
				used[in] = true
			}
		}
		keep := g.Node[:0]
		changed := false
		for _, n := range g.Node {
			dead := len(n.GetOutput()) > 0
			wasUsed := false
			for _, o := range n.GetOutput() {
				if o != "" && (used[o] || outputs[o]) {
					dead = false
				}
				wasUsed = wasUsed || usedBefore[o]
			}
			if dead && wasUsed {
				changed = true
				continue
			}
			keep = append(keep, n)
		}
		g.Node = keep
		if !changed {
			break
		}
	}
	used := map[string]bool{}
	produced := map[string]bool{}
	for _, n := range g.GetNode() {
		for _, in := range n.GetInput() {
			used[in] = true
		}
		for _, o := range n.GetOutput() {
			produced[o] = true
		}
	}
	dropped := map[string]bool{}
	inits := g.Initializer[:0]
	for _, t := range g.Initializer {
		name := t.GetName()
		if usedBefore[name] && !used[name] && !outputs[name] {
			dropped[name] = true
			continue
		}
		inits = append(inits, t)
	}
	g.Initializer = inits
	ins := g.Input[:0]
	for _, v := range g.Input {
		if !dropped[v.GetName()] {
			ins = append(ins, v)
		}
	}
	g.Input = ins
	isInit := map[string]bool{}
	for _, t := range g.Initializer {
		isInit[t.GetName()] = true
	}
	vis := g.ValueInfo[:0]
	for _, v := range g.ValueInfo {
		if produced[v.GetName()] || isInit[v.GetName()] {
			vis = append(vis, v)
		}
	}
	g.ValueInfo = vis
}
