package shapeinfer

import (
	"fmt"
	"math"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// unaryOps are the operators whose output 0 has the shape of input 0.
var unaryOps = map[string]bool{
	"Relu": true, "Clip": true, "HardSigmoid": true, "HardSwish": true, "Sigmoid": true,
	"Softmax": true, "LogSoftmax": true, "Tanh": true, "LeakyRelu": true, "Elu": true,
	"Selu": true, "Erf": true, "Exp": true, "Log": true, "Sqrt": true, "Neg": true,
	"Abs": true, "Floor": true, "Ceil": true, "Reciprocal": true, "Softplus": true,
	"Softsign": true, "Gelu": true, "Mish": true, "BatchNormalization": true,
	"InstanceNormalization": true, "LRN": true, "Round": true, "Sign": true,
	"Identity": true, "Dropout": true, "Not": true, "Celu": true, "ThresholdedRelu": true,
	"Shrink": true, "LpNormalization": true, "MeanVarianceNormalization": true,
}

// unary infers a shape-preserving operator, evaluating the few that shape
// arithmetic uses on known contents.
func (inf *inferer) unary(n *onnxpb.NodeProto) error {
	x := inf.in(n, 0)
	if x == nil {
		return fmt.Errorf("missing input")
	}
	out := shapeOf(append([]int64{}, x.Shape...), x.DType)
	op := n.GetOpType()
	switch op {
	case "Identity":
		out.Ints, out.Floats = x.Ints, x.Floats
	case "Floor", "Ceil", "Neg", "Abs", "Relu", "Sqrt", "Round":
		if x.Floats != nil {
			out.Floats = make([]float64, len(x.Floats))
			for i, f := range x.Floats {
				out.Floats[i] = unaryFloat(op, f)
			}
		}
		if x.Ints != nil {
			out.Ints = make([]int64, len(x.Ints))
			for i, v := range x.Ints {
				out.Ints[i] = unaryInt(op, v)
			}
		}
	}
	if op == "Not" {
		out.DType = onnxio.Bool
	}
	inf.set(n, 0, out)
	if op == "Dropout" && len(n.GetOutput()) > 1 {
		inf.set(n, 1, shapeOf(append([]int64{}, x.Shape...), onnxio.Bool))
	}
	if op == "BatchNormalization" {
		for i := 1; i < len(n.GetOutput()); i++ {
			c := int64(1)
			if len(x.Shape) > 1 {
				c = x.Shape[1]
			}
			inf.set(n, i, shapeOf([]int64{c}, x.DType))
		}
	}
	return nil
}

func unaryFloat(op string, f float64) float64 {
	switch op {
	case "Floor":
		return math.Floor(f)
	case "Ceil":
		return math.Ceil(f)
	case "Neg":
		return -f
	case "Abs":
		return math.Abs(f)
	case "Relu":
		return math.Max(f, 0)
	case "Sqrt":
		return math.Sqrt(f)
	case "Round":
		return math.RoundToEven(f)
	}
	return f
}

func unaryInt(op string, v int64) int64 {
	switch op {
	case "Neg":
		return -v
	case "Abs":
		if v < 0 {
			return -v
		}
	case "Relu":
		if v < 0 {
			return 0
		}
	case "Sqrt":
		return int64(math.Sqrt(float64(v)))
	}
	return v
}

// cast infers Cast, converting known contents: floats truncate toward
// zero to integers, anything non-zero becomes true.
func (inf *inferer) cast(n *onnxpb.NodeProto) error {
	x, err := inf.need(n, 0)
	if err != nil {
		return err
	}
	to := onnxio.DataType(onnxio.AttrInt(n, "to", 0))
	v := shapeOf(append([]int64{}, x.Shape...), to)
	toFloat := onnxio.IsFloat(int32(to))
	switch {
	case x.Ints != nil && toFloat:
		v.Floats = make([]float64, len(x.Ints))
		for i, a := range x.Ints {
			v.Floats[i] = float64(a)
		}
	case x.Ints != nil:
		v.Ints = append([]int64{}, x.Ints...)
		if to == onnxio.Bool {
			for i, a := range v.Ints {
				v.Ints[i] = b2i(a != 0)
			}
		}
	case x.Floats != nil && toFloat:
		v.Floats = append([]float64{}, x.Floats...)
	case x.Floats != nil:
		v.Ints = make([]int64, len(x.Floats))
		for i, f := range x.Floats {
			if to == onnxio.Bool {
				v.Ints[i] = b2i(f != 0)
			} else {
				v.Ints[i] = int64(math.Trunc(f))
			}
		}
	}
	inf.set(n, 0, v)
	return nil
}
