package fastform

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/shapefold"
)

// MetadataKey is the metadata_props key under which Rewrite records its
// Report, as JSON.
const MetadataKey = "lprconv_forms"

// Options select the rewrites.
type Options struct {
	// NoShuffle keeps channel shuffles as Concat → Reshape → Transpose.
	NoShuffle bool
	// NoDiagFold keeps diag residuals as group-C 1×1 convolutions (as
	// quantized exports need: a folded V has columns of very different
	// scales).
	NoDiagFold bool
	// NoPad keeps depthwise chains whose width is not a multiple of
	// PadMultiple as they are.
	NoPad bool
}

// Report says what Rewrite changed.
type Report struct {
	// Shuffles is the number of channel shuffles written as one Concat.
	Shuffles int `json:"shuffles"`
	// DiagFolds lists the diag residuals folded, each as the name of the
	// module's Add and of the node that now scales its input.
	DiagFolds []Fold `json:"diag_folds,omitempty"`
	// Padded lists the Conv → depthwise Conv → Conv chains whose inner
	// width was padded with zero channels to a multiple of PadMultiple.
	Padded []Pad `json:"padded,omitempty"`
	// Skipped, when not empty, says why the model was left unchanged, or
	// (shape inference failing) why its channel shuffles were.
	Skipped string `json:"skipped,omitempty"`
}

// Fold is one folded diag residual.
type Fold struct {
	Add  string `json:"add"`
	Into string `json:"into"`
}

// Pad is one padded chain, named by its depthwise Conv.
type Pad struct {
	Depthwise string `json:"depthwise"`
	From      int    `json:"from"`
	To        int    `json:"to"`
}

// String says what was rewritten, e.g. "16 channel shuffles as one
// Concat, 13 diag residuals folded into their input's producer, 4
// depthwise chains padded to a multiple of 4 channels".
func (r Report) String() string {
	var parts []string
	if r.Shuffles > 0 {
		parts = append(parts, fmt.Sprintf("%d channel shuffles as one Concat", r.Shuffles))
	}
	if n := len(r.DiagFolds); n > 0 {
		parts = append(parts, fmt.Sprintf("%d diag residuals folded into their input's producer", n))
	}
	if n := len(r.Padded); n > 0 {
		parts = append(parts, fmt.Sprintf("%d depthwise chains padded to a multiple of %d channels", n, PadMultiple))
	}
	if len(parts) == 0 {
		return "nothing rewritten"
	}
	return strings.Join(parts, ", ")
}

// Changed reports whether anything was rewritten.
func (r Report) Changed() bool {
	return r.Shuffles > 0 || len(r.DiagFolds) > 0 || len(r.Padded) > 0
}

// Rewrite returns a copy of m with its channel shuffles, foldable diag
// residuals and narrow depthwise chains in their faster forms (see the
// package documentation), in that order; m is not modified. Graphs with
// subgraphs are left alone.
func Rewrite(m *onnxpb.ModelProto, opts Options) (*onnxpb.ModelProto, Report, error) {
	var rep Report
	out := proto.Clone(m).(*onnxpb.ModelProto)
	g := out.GetGraph()
	if g == nil {
		return nil, rep, fmt.Errorf("fastform: model has no graph")
	}
	for _, n := range g.GetNode() {
		for _, a := range n.GetAttribute() {
			if a.GetG() != nil || len(a.GetGraphs()) > 0 {
				rep.Skipped = fmt.Sprintf("node %q has a subgraph", n.GetName())
				return proto.Clone(m).(*onnxpb.ModelProto), rep, nil
			}
		}
	}
	// Each pass indexes the graph as the passes before it left it.
	if !opts.NoShuffle {
		shapes, err := shapefold.InferAt(out)
		if err != nil {
			rep.Skipped = fmt.Sprintf("shape inference: %v", err)
		} else {
			ix := newGraphIndex(g)
			remove := map[*onnxpb.NodeProto]bool{}
			replace := map[*onnxpb.NodeProto][]*onnxpb.NodeProto{}
			for _, s := range findShuffles(ix, shapes) {
				replace[s.transpose] = rewriteShuffle(ix, s, onnxio.OpsetVersion(out))
				remove[s.concat], remove[s.reshape] = true, true
				rep.Shuffles++
			}
			editNodes(g, remove, replace)
		}
	}
	if !opts.NoDiagFold {
		ix := newGraphIndex(g)
		remove := map[*onnxpb.NodeProto]bool{}
		for _, f := range findDiagFolds(ix) {
			applyDiagFold(ix, f)
			remove[f.d] = true
			rep.DiagFolds = append(rep.DiagFolds, Fold{Add: f.add.GetName(), Into: f.producer.GetName()})
		}
		editNodes(g, remove, nil)
	}
	if !opts.NoPad {
		ix := newGraphIndex(g)
		stale := map[string]bool{}
		for _, ch := range findPadChains(ix) {
			applyPad(ix, ch)
			for _, v := range ch.values {
				stale[v] = true
			}
			rep.Padded = append(rep.Padded, Pad{Depthwise: ch.dw.GetName(), From: ch.channels, To: ch.padded})
		}
		var vis []*onnxpb.ValueInfoProto
		for _, v := range g.GetValueInfo() {
			if !stale[v.GetName()] {
				vis = append(vis, v)
			}
		}
		g.ValueInfo = vis
	}
	if !rep.Changed() {
		return out, rep, nil
	}
	dropUnused(g)
	if err := onnxio.SetMetadataJSON(out, MetadataKey, rep); err != nil {
		return nil, rep, fmt.Errorf("fastform: %w", err)
	}
	return out, rep, nil
}

// editNodes removes the nodes in remove and puts replace[n]'s nodes where
// n was, keeping the graph's order otherwise.
func editNodes(g *onnxpb.GraphProto, remove map[*onnxpb.NodeProto]bool, replace map[*onnxpb.NodeProto][]*onnxpb.NodeProto) {
	if len(remove) == 0 && len(replace) == 0 {
		return
	}
	var nodes []*onnxpb.NodeProto
	for _, n := range g.GetNode() {
		if r, ok := replace[n]; ok {
			nodes = append(nodes, r...)
		} else if !remove[n] {
			nodes = append(nodes, n)
		}
	}
	g.Node = nodes
}

// dropUnused removes initializers that no node reads and that are not
// graph outputs. Initializers that are also graph inputs stay: they are
// part of the model's interface (a caller may feed them), and no rewrite
// replaces one.
func dropUnused(g *onnxpb.GraphProto) {
	used := map[string]bool{}
	for _, v := range g.GetInput() {
		used[v.GetName()] = true
	}
	for _, n := range g.GetNode() {
		for _, in := range n.GetInput() {
			used[in] = true
		}
	}
	for _, o := range g.GetOutput() {
		used[o.GetName()] = true
	}
	var inits []*onnxpb.TensorProto
	for _, t := range g.GetInitializer() {
		if used[t.GetName()] {
			inits = append(inits, t)
		}
	}
	g.Initializer = inits
	produced := map[string]bool{}
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			produced[o] = true
		}
	}
	var vis []*onnxpb.ValueInfoProto
	for _, v := range g.GetValueInfo() {
		if used[v.GetName()] || produced[v.GetName()] {
			vis = append(vis, v)
		}
	}
	g.ValueInfo = vis
}
