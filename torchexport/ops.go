package torchexport

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// call is one node being translated.
type call struct {
	g     *gen
	n     *onnxpb.NodeProto
	attrs map[string]*onnxpb.AttributeProto
}

// emitters translates each supported operator type. Every operator that
// engine.SupportedOps lists has one (a test checks).
var emitters = map[string]func(c *call) error{
	"Conv":               emitConv,
	"BatchNormalization": emitBatchNorm,
	"MaxPool":            emitMaxPool,
	"AveragePool":        emitAvgPool,
	"GlobalAveragePool":  func(c *call) error { return c.set("ops.global_pool(%s, False)", c.in(0)) },
	"GlobalMaxPool":      func(c *call) error { return c.set("ops.global_pool(%s, True)", c.in(0)) },
	"Relu":               unary("torch.relu(%s)"),
	"Sigmoid":            unary("torch.sigmoid(%s)"),
	"Tanh":               unary("torch.tanh(%s)"),
	"Exp":                unary("torch.exp(%s)"),
	"Neg":                unary("torch.neg(%s)"),
	"Abs":                unary("torch.abs(%s)"),
	"Sqrt":               unary("torch.sqrt(%s)"),
	"HardSwish":          unary("torch.nn.functional.hardswish(%s)"),
	"HardSigmoid": func(c *call) error {
		return c.set("ops.hard_sigmoid(%s, %s, %s)", c.in(0), c.float("alpha", 0.2), c.float("beta", 0.5))
	},
	"LeakyRelu": func(c *call) error {
		return c.set("torch.nn.functional.leaky_relu(%s, %s)", c.in(0), c.float("alpha", 0.01))
	},
	"Clip":       emitClip,
	"Add":        binaryOp("%s + %s"),
	"Sub":        binaryOp("%s - %s"),
	"Mul":        binaryOp("%s * %s"),
	"Div":        binaryOp("ops.div(%s, %s)"),
	"Gemm":       emitGemm,
	"MatMul":     func(c *call) error { return c.set("torch.matmul(%s, %s)", c.in(0), c.in(1)) },
	"Softmax":    emitSoftmax(false),
	"LogSoftmax": emitSoftmax(true),
	"ReduceMean": emitReduce(true),
	"ReduceSum":  emitReduce(false),
	"Identity":   func(c *call) error { return c.set("%s", c.in(0)) },
	"Dropout":    emitDropout,
	"Reshape":    emitReshape,
	"Flatten":    func(c *call) error { return c.set("ops.flatten(%s, %d)", c.in(0), c.int("axis", 1)) },
	"Squeeze":    emitSqueeze("squeeze"),
	"Unsqueeze":  emitSqueeze("unsqueeze"),
	"Transpose": func(c *call) error {
		perm := "None"
		if c.has("perm") {
			perm = pyInts(c.attrs["perm"].GetInts())
		}
		return c.set("ops.transpose(%s, %s)", c.in(0), perm)
	},
	"Concat": func(c *call) error {
		if !c.has("axis") {
			return fmt.Errorf("attribute axis is required")
		}
		var ins []string
		for i := range c.n.GetInput() {
			ins = append(ins, c.in(i))
		}
		return c.set("torch.cat([%s], dim=%d)", strings.Join(ins, ", "), c.int("axis", 0))
	},
	"Split": emitSplit,
	"Slice": emitSlice,
	"Shape": func(c *call) error {
		end := "None"
		if c.has("end") {
			end = strconv.FormatInt(c.int("end", 0), 10)
		}
		return c.set("ops.shape(%s, %d, %s)", c.in(0), c.int("start", 0), end)
	},
	"Gather":   func(c *call) error { return c.set("ops.gather(%s, %s, %d)", c.in(0), c.in(1), c.int("axis", 0)) },
	"Cast":     func(c *call) error { return c.set("ops.cast(%s, %d)", c.in(0), c.int("to", 1)) },
	"Constant": emitConstant,
}

// SupportedOps returns the operator types Generate translates.
func SupportedOps() []string {
	var out []string
	for op := range emitters {
		out = append(out, op)
	}
	sort.Strings(out)
	return out
}

// node translates one node, checking that its inputs are defined.
func (g *gen) node(n *onnxpb.NodeProto) error {
	emit := emitters[n.GetOpType()]
	if emit == nil {
		return fmt.Errorf("operator %s is not supported by export-torch (supported: %s)", n.GetOpType(), strings.Join(SupportedOps(), ", "))
	}
	c := &call{g: g, n: n, attrs: map[string]*onnxpb.AttributeProto{}}
	for _, a := range n.GetAttribute() {
		c.attrs[a.GetName()] = a
	}
	for _, in := range n.GetInput() {
		if in == "" {
			continue
		}
		if _, ok := g.expr[in]; !ok {
			return fmt.Errorf("input %q is not produced by an earlier node (nodes must be in topological order)", in)
		}
	}
	if len(n.GetOutput()) == 0 {
		return fmt.Errorf("the node has no output")
	}
	return emit(c)
}

// in returns the expression of input i ("None" when absent).
func (c *call) in(i int) string {
	ins := c.n.GetInput()
	if i >= len(ins) || ins[i] == "" {
		return "None"
	}
	return c.g.expr[ins[i]]
}

// set assigns the node's first output.
func (c *call) set(format string, a ...any) error {
	rhs := fmt.Sprintf(format, a...)
	v := c.g.define(c.n.GetOutput()[0])
	c.g.body = append(c.g.body, v+" = "+rhs)
	return nil
}

func (c *call) has(name string) bool { return c.attrs[name] != nil }

func (c *call) int(name string, def int64) int64 {
	if a := c.attrs[name]; a != nil {
		return a.GetI()
	}
	return def
}

// float returns a float attribute as the exact decimal of its float32.
func (c *call) float(name string, def float32) string {
	v := def
	if a := c.attrs[name]; a != nil {
		v = a.GetF()
	}
	return pyFloat(v)
}

func (c *call) str(name, def string) string {
	if a := c.attrs[name]; a != nil {
		return string(a.GetS())
	}
	return def
}

// ints returns an ints attribute as a Python list, or "None" when absent.
func (c *call) ints(name string) string {
	if a := c.attrs[name]; a != nil {
		return pyInts(a.GetInts())
	}
	return "None"
}

func pyInts(v []int64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatInt(x, 10)
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func pyFloat(v float32) string {
	switch {
	case math.IsInf(float64(v), 1):
		return "float('inf')"
	case math.IsInf(float64(v), -1):
		return "float('-inf')"
	case math.IsNaN(float64(v)):
		return "float('nan')"
	}
	s := strconv.FormatFloat(float64(v), 'g', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}

func unary(format string) func(c *call) error {
	return func(c *call) error { return c.set(format, c.in(0)) }
}

func binaryOp(format string) func(c *call) error {
	return func(c *call) error {
		b := c.in(1)
		if c.g.opset < 7 && c.int("broadcast", 0) == 1 && c.has("axis") {
			b = fmt.Sprintf("ops.legacy_broadcast(%s, %s, %d)", c.in(0), b, c.int("axis", 0))
		}
		return c.set(format, c.in(0), b)
	}
}

// window returns the keyword arguments shared by Conv and the pools.
func (c *call) window(dilations bool) string {
	s := fmt.Sprintf("kernel_shape=%s, strides=%s, pads=%s", c.ints("kernel_shape"), c.ints("strides"), c.ints("pads"))
	if dilations {
		s += ", dilations=" + c.ints("dilations")
	}
	return s + ", auto_pad=" + pyStr(c.str("auto_pad", "NOTSET"))
}

func emitConv(c *call) error {
	return c.set("ops.conv(%s, %s, %s, %s, group=%d)", c.in(0), c.in(1), c.in(2), c.window(true), c.int("group", 1))
}

func emitBatchNorm(c *call) error {
	if c.has("spatial") && c.int("spatial", 1) == 0 {
		return fmt.Errorf("spatial=0 (per-activation statistics) is not supported")
	}
	if c.int("training_mode", 0) != 0 {
		return fmt.Errorf("training_mode=1 is not supported (export the model for inference)")
	}
	return c.set("ops.batch_norm(%s, %s, %s, %s, %s, %s)", c.in(0), c.in(1), c.in(2), c.in(3), c.in(4), c.float("epsilon", 1e-5))
}

func emitMaxPool(c *call) error {
	if !c.has("kernel_shape") {
		return fmt.Errorf("attribute kernel_shape is required")
	}
	return c.set("ops.max_pool(%s, %s, ceil_mode=%d)", c.in(0), c.window(true), c.int("ceil_mode", 0))
}

func emitAvgPool(c *call) error {
	if !c.has("kernel_shape") {
		return fmt.Errorf("attribute kernel_shape is required")
	}
	if a := c.attrs["dilations"]; a != nil {
		for _, d := range a.GetInts() {
			if d != 1 {
				return fmt.Errorf("dilations %v are not supported", a.GetInts())
			}
		}
	}
	return c.set("ops.avg_pool(%s, %s, ceil_mode=%d, count_include_pad=%d)", c.in(0), c.window(false), c.int("ceil_mode", 0), c.int("count_include_pad", 0))
}

func emitClip(c *call) error {
	if c.g.opset < 11 {
		lo, hi := "None", "None"
		if c.has("min") {
			lo = c.float("min", 0)
		}
		if c.has("max") {
			hi = c.float("max", 0)
		}
		return c.set("ops.clip(%s, %s, %s)", c.in(0), lo, hi)
	}
	return c.set("ops.clip(%s, %s, %s)", c.in(0), c.in(1), c.in(2))
}

func emitGemm(c *call) error {
	return c.set("ops.gemm(%s, %s, %s, alpha=%s, beta=%s, trans_a=%d, trans_b=%d)", c.in(0), c.in(1), c.in(2),
		c.float("alpha", 1), c.float("beta", 1), c.int("transA", 0), c.int("transB", 0))
}

func emitSoftmax(log bool) func(c *call) error {
	return func(c *call) error {
		if c.g.opset < 13 {
			return c.set("ops.softmax_2d(%s, %d, %s)", c.in(0), c.int("axis", 1), pyBool(log))
		}
		fn := "torch.softmax"
		if log {
			fn = "torch.log_softmax"
		}
		return c.set("%s(%s, %d)", fn, c.in(0), c.int("axis", -1))
	}
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func emitReduce(mean bool) func(c *call) error {
	return func(c *call) error {
		// Axes moved from attribute to input in opset 13 (ReduceSum) and
		// 18 (ReduceMean).
		inputFrom := 18
		if !mean {
			inputFrom = 13
		}
		axes := c.ints("axes")
		if c.g.opset >= inputFrom {
			axes = c.in(1)
		}
		return c.set("ops.reduce(%s, %s, keepdims=%d, noop_with_empty_axes=%d, mean=%s)", c.in(0), axes,
			c.int("keepdims", 1), c.int("noop_with_empty_axes", 0), pyBool(mean))
	}
}

func emitDropout(c *call) error {
	if c.g.opset >= 12 && c.in(2) != "None" {
		return fmt.Errorf("a training_mode input is not supported (export the model for inference)")
	}
	x := c.in(0)
	if err := c.set("%s", x); err != nil {
		return err
	}
	if outs := c.n.GetOutput(); len(outs) > 1 && outs[1] != "" {
		v := c.g.define(outs[1])
		c.g.body = append(c.g.body, fmt.Sprintf("%s = torch.ones_like(%s, dtype=torch.bool)", v, x))
	}
	return nil
}

func emitReshape(c *call) error {
	if c.g.opset < 5 {
		return c.set("ops.reshape(%s, %s)", c.in(0), c.ints("shape"))
	}
	return c.set("ops.reshape(%s, %s, %d)", c.in(0), c.in(1), c.int("allowzero", 0))
}

func emitSqueeze(fn string) func(c *call) error {
	return func(c *call) error {
		axes := c.ints("axes")
		if c.g.opset >= 13 {
			axes = c.in(1)
		}
		if fn == "unsqueeze" && axes == "None" {
			return fmt.Errorf("axes are required")
		}
		return c.set("ops.%s(%s, %s)", fn, c.in(0), axes)
	}
}

func emitSplit(c *call) error {
	sizes := c.ints("split")
	if c.g.opset >= 13 {
		sizes = c.in(1)
	}
	outs := c.n.GetOutput()
	n := int64(len(outs))
	if c.has("num_outputs") {
		n = c.int("num_outputs", n)
	}
	vars := make([]string, len(outs))
	for i, o := range outs {
		vars[i] = c.g.define(o)
	}
	lhs := strings.Join(vars, ", ")
	if len(vars) == 1 {
		lhs += ","
	}
	c.g.body = append(c.g.body, fmt.Sprintf("%s = ops.split(%s, %d, %s, %d)", lhs, c.in(0), c.int("axis", 0), sizes, n))
	return nil
}

func emitSlice(c *call) error {
	if c.g.opset < 10 {
		return c.set("ops.slice(%s, %s, %s, %s)", c.in(0), c.ints("starts"), c.ints("ends"), c.ints("axes"))
	}
	return c.set("ops.slice(%s, %s, %s, %s, %s)", c.in(0), c.in(1), c.in(2), c.in(3), c.in(4))
}

func emitConstant(c *call) error {
	for _, k := range []string{"value", "value_float", "value_floats", "value_int", "value_ints"} {
		if c.has(k) {
			out := c.n.GetOutput()[0]
			a := c.g.namer.Name("c_", out)
			c.g.consts = append(c.g.consts, [2]string{a, out})
			c.g.expr[out] = "self." + a
			return nil
		}
	}
	return fmt.Errorf("no supported value attribute (value, value_float(s), value_int(s))")
}
