package torchexport

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/lprconv/lprconv/finetune"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Tensor is one initializer of the generated module.
type Tensor struct {
	// Attr is the module attribute (the mangled name), ONNX the
	// initializer's name.
	Attr string `json:"attr"`
	ONNX string `json:"onnx"`
	// Param is set for an nn.Parameter (a float tensor lprconv's
	// fine-tuning may train); other initializers are buffers.
	Param bool    `json:"param"`
	Shape []int64 `json:"shape"`
}

// Module is a generated Python module and what it registers.
type Module struct {
	// Source is the text of the Python file.
	Source []byte
	// Tensors lists the initializers in graph order.
	Tensors []Tensor
	// Inputs and Outputs are the graph's ONNX input and output names, in
	// the order of forward's arguments and results.
	Inputs, Outputs []string
	// Ops counts the nodes per operator type.
	Ops map[string]int
}

// GenOptions configure Generate.
type GenOptions struct {
	// ONNXFile is the name of the ONNX file, next to the module, that the
	// module reads its tensors from (default "model.onnx").
	ONNXFile string
	// Class is the name of the nn.Module class (default "Model").
	Class string
	// Origin describes the source model in the header comment.
	Origin string
}

// Opset returns the model's ai.onnx opset version.
func Opset(m *onnxpb.ModelProto) (int, error) {
	for _, o := range m.GetOpsetImport() {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			return int(o.GetVersion()), nil
		}
	}
	return 0, errors.New("the model imports no ai.onnx opset")
}

// gen is the state of one Generate call.
type gen struct {
	opset int
	namer *Namer
	// expr is the Python expression of each ONNX value defined so far.
	expr map[string]string
	// body holds forward's lines; consts the Constant outputs.
	body   []string
	consts [][2]string
	nvals  int
}

// Generate writes a torch.nn.Module equivalent to m's graph in inference:
// one Python statement per node, in graph order, calling onnxops.py.
func Generate(m *onnxpb.ModelProto, opts GenOptions) (*Module, error) {
	if opts.ONNXFile == "" {
		opts.ONNXFile = "model.onnx"
	}
	if opts.Class == "" {
		opts.Class = "Model"
	}
	opset, err := Opset(m)
	if err != nil {
		return nil, err
	}
	gr := m.GetGraph()
	g := &gen{opset: opset, namer: NewNamer(), expr: map[string]string{}}
	trainable := map[string]bool{}
	for _, set := range []finetune.TrainSet{finetune.TrainLPR, finetune.TrainAll} {
		for _, n := range finetune.TrainableTensors(m, set) {
			trainable[n] = true
		}
	}
	mod := &Module{Ops: map[string]int{}}
	for _, t := range gr.GetInitializer() {
		a := g.namer.Name("w_", t.GetName())
		mod.Tensors = append(mod.Tensors, Tensor{Attr: a, ONNX: t.GetName(), Param: trainable[t.GetName()], Shape: t.GetDims()})
		g.expr[t.GetName()] = "self." + a
		if _, err := onnxio.NumElements(t); err != nil {
			return nil, fmt.Errorf("initializer %q: %w", t.GetName(), err)
		}
	}
	var args []string
	for _, in := range gr.GetInput() {
		if _, ok := g.expr[in.GetName()]; ok {
			continue // an initializer listed among the inputs (IR < 4)
		}
		if in.GetType().GetTensorType() == nil {
			return nil, fmt.Errorf("graph input %q is not a tensor (sequence and optional values are not supported)", in.GetName())
		}
		a := g.namer.Name("x_", in.GetName())
		args = append(args, a)
		mod.Inputs = append(mod.Inputs, in.GetName())
		g.expr[in.GetName()] = a
	}
	if len(args) == 0 {
		return nil, errors.New("the graph has no input")
	}
	last := lastUses(gr)
	for i, n := range gr.GetNode() {
		if d := n.GetDomain(); d != "" && d != "ai.onnx" {
			return nil, fmt.Errorf("node %d %q: operator %s of domain %q is not supported", i, n.GetName(), n.GetOpType(), d)
		}
		g.body = append(g.body, fmt.Sprintf("# %d %s %s", i, n.GetOpType(), pyComment(n.GetName())))
		if err := g.node(n); err != nil {
			return nil, fmt.Errorf("node %d %q (%s): %w", i, n.GetName(), n.GetOpType(), err)
		}
		mod.Ops[n.GetOpType()]++
		if dead := g.dead(last[i], gr); len(dead) > 0 {
			g.body = append(g.body, "del "+strings.Join(dead, ", "))
		}
	}
	var results []string
	for _, o := range gr.GetOutput() {
		e, ok := g.expr[o.GetName()]
		if !ok {
			return nil, fmt.Errorf("graph output %q is not produced by any node", o.GetName())
		}
		results = append(results, e)
		mod.Outputs = append(mod.Outputs, o.GetName())
	}
	if len(results) == 1 {
		g.body = append(g.body, "return "+results[0])
	} else {
		g.body = append(g.body, "return ("+strings.Join(results, ", ")+")")
	}
	mod.Source = g.source(opts, args, mod)
	return mod, nil
}

// lastUses lists, per node index, the values whose last reader it is.
func lastUses(gr *onnxpb.GraphProto) map[int][]string {
	at := map[string]int{}
	for i, n := range gr.GetNode() {
		for _, in := range n.GetInput() {
			at[in] = i
		}
	}
	out := map[int][]string{}
	for v, i := range at {
		out[i] = append(out[i], v)
	}
	for i := range out {
		sort.Strings(out[i])
	}
	return out
}

// dead returns the local variables among values that no later node reads
// and that are not graph outputs (they are deleted to free memory early).
func (g *gen) dead(values []string, gr *onnxpb.GraphProto) []string {
	outs := map[string]bool{}
	for _, o := range gr.GetOutput() {
		outs[o.GetName()] = true
	}
	var dead []string
	seen := map[string]bool{}
	for _, v := range values {
		e := g.expr[v]
		if v == "" || outs[v] || !strings.HasPrefix(e, "v") || seen[e] {
			continue
		}
		seen[e] = true
		dead = append(dead, e)
	}
	return dead
}

// define gives an ONNX value a new local variable.
func (g *gen) define(name string) string {
	if name == "" {
		return "_"
	}
	v := "v" + strconv.Itoa(g.nvals)
	g.nvals++
	g.expr[name] = v
	return v
}

// pyComment makes s safe inside a one-line Python comment.
func pyComment(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}

// pyDoc makes s safe inside a Python docstring.
func pyDoc(s string) string {
	return strings.NewReplacer("\\", "/", "\"", "'", "\n", " ", "\r", " ").Replace(s)
}

// pyStr is a Python string literal.
func pyStr(s string) string { return strconv.Quote(s) }

func (g *gen) source(opts GenOptions, args []string, mod *Module) []byte {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("%s", `"""A torch.nn.Module generated by lprconv export-torch from an ONNX graph.

`)
	w("Source: %s (ai.onnx opset %d, %d initializers). The weights are read\n", pyDoc(opts.Origin), g.opset, len(mod.Tensors))
	w("from %s next to this file with the onnx package. Attribute names are\n", pyDoc(opts.ONNXFile))
	w("%s", `ONNX initializer names with every character outside [A-Za-z0-9_] replaced
by "_" and a "w_" prefix (a numeric suffix when two names collide);
ONNX_NAMES maps them back, and onnx_state_dict() / load_onnx_state_dict()
use ONNX names. Trainable float tensors are nn.Parameters, other
initializers buffers, Constant node values non-persistent buffers.

Written by lprconv export-torch; edits are lost on the next export.
"""
import os

import torch

import onnxops as ops

`)
	w("ONNX_FILE = %s\n\n", pyStr(opts.ONNXFile))
	w("# (attribute, ONNX initializer name, kind)\nTENSORS = [\n")
	for _, t := range mod.Tensors {
		kind := "buffer"
		if t.Param {
			kind = "param"
		}
		w("    (%s, %s, %s),\n", pyStr(t.Attr), pyStr(t.ONNX), pyStr(kind))
	}
	w("]\n\n# (attribute, output of a Constant node)\nCONSTANTS = [\n")
	for _, c := range g.consts {
		w("    (%s, %s),\n", pyStr(c[0]), pyStr(c[1]))
	}
	w("]\n\nONNX_NAMES = {a: n for a, n, _ in TENSORS}\n")
	w("INPUTS = [%s]\n", pyList(mod.Inputs))
	w("OUTPUTS = [%s]\n\n\n", pyList(mod.Outputs))
	w("class %s(torch.nn.Module):\n", opts.Class)
	w(`    """The ONNX graph as a module; forward(%s) returns %s."""

    def __init__(self, onnx_path=None):
        super().__init__()
        if onnx_path is None:
            onnx_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), ONNX_FILE)
        ops.load_tensors(self, onnx_path, TENSORS, CONSTANTS)

    def onnx_state_dict(self):
        """The initializers keyed by ONNX name (detached)."""
        return {n: getattr(self, a).detach() for a, n, _ in TENSORS}

    def load_onnx_state_dict(self, state):
        """Copies tensors keyed by ONNX initializer name into the module."""
        by_name = {n: a for a, n, _ in TENSORS}
        with torch.no_grad():
            for n, t in state.items():
                if n not in by_name:
                    raise KeyError("no initializer %%r in this model" %% n)
                getattr(self, by_name[n]).copy_(t)

`, strings.Join(args, ", "), pyDoc(strings.Join(mod.Outputs, ", ")))
	w("    def forward(self, %s):\n", strings.Join(args, ", "))
	for _, l := range g.body {
		w("        %s\n", l)
	}
	return []byte(b.String())
}

func pyList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = pyStr(s)
	}
	return strings.Join(q, ", ")
}
