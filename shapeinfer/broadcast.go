package shapeinfer

import (
	"fmt"
	"math"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Broadcast applies ONNX multidirectional (numpy) broadcasting: the shapes
// are aligned at their last dims, and along each dim the sizes must be
// equal or one of them 1; out_i = max(a_i, b_i). Negative dims (an Expand
// target computed wrong) are an error.
func Broadcast(a, b []int64) ([]int64, error) {
	r := max(len(a), len(b))
	out := make([]int64, r)
	for i := 0; i < r; i++ {
		da, db := int64(1), int64(1)
		if j := len(a) - r + i; j >= 0 {
			da = a[j]
		}
		if j := len(b) - r + i; j >= 0 {
			db = b[j]
		}
		switch {
		case da < 0 || db < 0:
			return nil, fmt.Errorf("shapes %v and %v have a negative dim", a, b)
		case da == db:
			out[i] = da
		case da == 1:
			out[i] = db
		case db == 1:
			out[i] = da
		default:
			return nil, fmt.Errorf("shapes %v and %v do not broadcast", a, b)
		}
	}
	return out, nil
}

// BroadcastsTo reports whether shape a broadcasts unidirectionally to out
// (as Gemm's C to [M, N]): Broadcast(a, out) == out.
func BroadcastsTo(a, out []int64) bool {
	s, err := Broadcast(a, out)
	if err != nil || len(s) != len(out) {
		return false
	}
	for i := range s {
		if s[i] != out[i] {
			return false
		}
	}
	return true
}

// broadcastIndex maps flat index i of shape out to the flat index of a
// tensor of shape in broadcast to out.
func broadcastIndex(i int64, out, in []int64) int64 {
	idx, stride := int64(0), int64(1)
	for d := len(out) - 1; d >= 0; d-- {
		c := i % out[d]
		i /= out[d]
		j := d - (len(out) - len(in))
		if j < 0 {
			continue
		}
		if in[j] != 1 {
			idx += c * stride
		}
		stride *= in[j]
	}
	return idx
}

var binaryOps = map[string]bool{
	"Add": true, "Sub": true, "Mul": true, "Div": true, "Pow": true, "Mod": true,
	"Max": true, "Min": true, "Sum": true, "Mean": true, "Equal": true, "Less": true,
	"Greater": true, "LessOrEqual": true, "GreaterOrEqual": true, "And": true, "Or": true,
	"Xor": true, "PRelu": true, "Where": true,
}

// broadcastOp infers an element-wise operator over broadcast inputs and
// evaluates it when both inputs are known small constants.
func (inf *inferer) broadcastOp(n *onnxpb.NodeProto) error {
	op := n.GetOpType()
	var ins []*Value
	for i := range n.GetInput() {
		if v := inf.in(n, i); v != nil {
			ins = append(ins, v)
		}
	}
	if len(ins) == 0 {
		return fmt.Errorf("no inputs")
	}
	shape := ins[0].Shape
	for _, v := range ins[1:] {
		s, err := Broadcast(shape, v.Shape)
		if err != nil {
			return err
		}
		shape = s
	}
	dt := ins[0].DType
	switch op {
	case "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor":
		dt = onnxio.Bool
	case "Where":
		dt = ins[1].DType
	}
	out := shapeOf(shape, dt)
	fmod := onnxio.AttrInt(n, "fmod", 0) != 0
	if len(ins) == 2 && op != "Where" {
		count := out.Elements()
		a, b := ins[0], ins[1]
		switch {
		case a.hasInts() && b.hasInts() && count <= maxKnownInts:
			res := make([]int64, count)
			for i := range res {
				x := a.Ints[broadcastIndex(int64(i), shape, a.Shape)]
				y := b.Ints[broadcastIndex(int64(i), shape, b.Shape)]
				r, err := binaryInt(op, x, y, fmod)
				if err != nil {
					return err
				}
				res[i] = r
			}
			out.Ints = res
		case a.hasFloats() && b.hasFloats() && count <= maxKnownFloats:
			res := make([]float64, count)
			for i := range res {
				x := a.Floats[broadcastIndex(int64(i), shape, a.Shape)]
				y := b.Floats[broadcastIndex(int64(i), shape, b.Shape)]
				res[i] = binaryFloat(op, x, y)
			}
			if dt == onnxio.Bool {
				out.Ints = make([]int64, count)
				for i, r := range res {
					out.Ints[i] = int64(r)
				}
			} else {
				out.Floats = res
			}
		}
	}
	inf.set(n, 0, out)
	return nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// binaryInt evaluates an element-wise operator on integers. Mod takes
// the sign of the divisor, or with fmod that of the dividend (C's %).
func binaryInt(op string, x, y int64, fmod bool) (int64, error) {
	switch op {
	case "Add", "Sum":
		return x + y, nil
	case "Sub":
		return x - y, nil
	case "Mul":
		return x * y, nil
	case "Div":
		if y == 0 {
			return 0, fmt.Errorf("integer division by zero")
		}
		return x / y, nil // truncation, as ONNX Runtime does
	case "Mod":
		if y == 0 {
			return 0, fmt.Errorf("integer modulo by zero")
		}
		r := x % y
		if !fmod && r != 0 && (r < 0) != (y < 0) {
			r += y
		}
		return r, nil
	case "Max":
		return max(x, y), nil
	case "Min":
		return min(x, y), nil
	case "Mean":
		return (x + y) / 2, nil
	case "Pow":
		return int64(math.Pow(float64(x), float64(y))), nil
	case "Equal":
		return b2i(x == y), nil
	case "Less":
		return b2i(x < y), nil
	case "Greater":
		return b2i(x > y), nil
	case "LessOrEqual":
		return b2i(x <= y), nil
	case "GreaterOrEqual":
		return b2i(x >= y), nil
	case "And":
		return b2i(x != 0 && y != 0), nil
	case "Or":
		return b2i(x != 0 || y != 0), nil
	case "Xor":
		return b2i((x != 0) != (y != 0)), nil
	case "PRelu":
		if x < 0 {
			return x * y, nil
		}
		return x, nil
	}
	return 0, fmt.Errorf("operator %s on integers is not supported", op)
}

// binaryFloat evaluates an element-wise operator on floats (comparisons
// give 0 or 1).
func binaryFloat(op string, x, y float64) float64 {
	switch op {
	case "Add", "Sum":
		return x + y
	case "Sub":
		return x - y
	case "Mul":
		return x * y
	case "Div":
		return x / y
	case "Mod":
		return math.Mod(x, y)
	case "Max":
		return math.Max(x, y)
	case "Min":
		return math.Min(x, y)
	case "Mean":
		return (x + y) / 2
	case "Pow":
		return math.Pow(x, y)
	case "Equal":
		return float64(b2i(x == y))
	case "Less":
		return float64(b2i(x < y))
	case "Greater":
		return float64(b2i(x > y))
	case "LessOrEqual":
		return float64(b2i(x <= y))
	case "GreaterOrEqual":
		return float64(b2i(x >= y))
	case "PRelu":
		if x < 0 {
			return x * y
		}
	}
	return x
}
