package torchexport

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Probe tensor names: distill.py stores seeded random inputs and the
// trained student's outputs on them under these names (also named by the
// file's metadata keys probe_input and probe_output).
const (
	ProbeInput  = "lprconv.probe.input"
	ProbeOutput = "lprconv.probe.output"
)

// Probe returns the probe inputs and outputs stored in w, or nils when it
// has none.
func (w *Weights) Probe() (in, out *STensor) {
	ni, no := ProbeInput, ProbeOutput
	if v := w.Metadata["probe_input"]; v != "" {
		ni = v
	}
	if v := w.Metadata["probe_output"]; v != "" {
		no = v
	}
	in, out = w.Tensors[ni], w.Tensors[no]
	if in == nil || out == nil || in.F == nil || out.F == nil {
		return nil, nil
	}
	return in, out
}

// isProbe reports whether name is one of w's probe tensors.
func (w *Weights) isProbe(name string) bool {
	return name == ProbeInput || name == ProbeOutput || name == w.Metadata["probe_input"] || name == w.Metadata["probe_output"]
}

// Import returns a copy of m whose initializers named in w (probe tensors
// aside) hold w's values, and the names it replaced. Every such tensor must
// name an initializer of m of the same shape and kind (float or integer);
// m is not modified.
func Import(m *onnxpb.ModelProto, w *Weights) (*onnxpb.ModelProto, []string, error) {
	out := proto.Clone(m).(*onnxpb.ModelProto)
	idx := map[string]int{}
	for i, t := range out.GetGraph().GetInitializer() {
		idx[t.GetName()] = i
	}
	var done []string
	for _, name := range w.Names() {
		if w.isProbe(name) {
			if _, clash := idx[name]; clash {
				return nil, nil, fmt.Errorf("import: %q is both a probe tensor and an initializer of the model", name)
			}
			continue
		}
		t := w.Tensors[name]
		i, ok := idx[name]
		if !ok {
			return nil, nil, fmt.Errorf("import: tensor %q is not an initializer of the model (was the checkpoint made for another model?)", name)
		}
		old := out.Graph.Initializer[i]
		if !slices.Equal(old.GetDims(), t.Shape) {
			return nil, nil, fmt.Errorf("import: tensor %q has shape %v; the model's initializer has %v", name, t.Shape, old.GetDims())
		}
		switch dt := onnxio.DataType(old.GetDataType()); {
		case dt == onnxio.Float && t.F != nil:
			for _, v := range t.F {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					return nil, nil, fmt.Errorf("import: tensor %q holds NaN or infinite values", name)
				}
			}
			out.Graph.Initializer[i] = onnxio.NewFloat32(name, old.GetDims(), t.F)
		case dt == onnxio.Int64 && t.I != nil:
			out.Graph.Initializer[i] = onnxio.NewInt64(name, old.GetDims(), t.I)
		default:
			return nil, nil, fmt.Errorf("import: tensor %q is %s; the model's initializer has data type %d", name, t.DType, old.GetDataType())
		}
		done = append(done, name)
	}
	if len(done) == 0 {
		return nil, nil, errors.New("import: the weights file holds no tensor of the model")
	}
	return out, done, nil
}

// ProbeOrRandom returns w's probe inputs and outputs, or, when it has none,
// n seeded standard-normal inputs for m's image input (and nil outputs).
func ProbeOrRandom(m *onnxpb.ModelProto, w *Weights, n int) (x []float32, shape []int, want []float32, err error) {
	in, err := evaluate.ModelInput(m)
	if err != nil {
		return nil, nil, nil, err
	}
	if pi, po := w.Probe(); pi != nil {
		if len(pi.Shape) != 4 || int(pi.Shape[1]) != in.Channels || int(pi.Shape[2]) != in.Height || int(pi.Shape[3]) != in.Width {
			return nil, nil, nil, fmt.Errorf("probe input of shape %v does not fit input %q (%dx%dx%d)", pi.Shape, in.Name, in.Channels, in.Height, in.Width)
		}
		for _, d := range pi.Shape {
			shape = append(shape, int(d))
		}
		return pi.F, shape, po.F, nil
	}
	if in.Batch > 0 {
		n = in.Batch
	}
	shape = []int{n, in.Channels, in.Height, in.Width}
	r := rand.New(rand.NewPCG(1, 2))
	x = make([]float32, n*in.Channels*in.Height*in.Width)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x, shape, nil, nil
}

// RunEngine runs m's first output in lprconv's engine on x of the given
// input shape.
func RunEngine(m *onnxpb.ModelProto, x []float32, shape []int, threads int) ([]float32, error) {
	in, err := evaluate.ModelInput(m)
	if err != nil {
		return nil, err
	}
	p, err := engine.Compile(m, engine.Options{Threads: threads, InputShapes: map[string][]int{in.Name: shape}})
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	defer p.Close()
	res, err := p.Run(map[string]*engine.Tensor{in.Name: engine.NewTensorF(x, shape...)})
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	return res[in.Output].F, nil
}

// RelMaxAbs is the relative max-abs error of got against want:
// max |got - want| / max |want| (+Inf when the lengths differ).
func RelMaxAbs(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var diff, ref float64
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		diff = max(diff, d)
		ref = max(ref, math.Abs(float64(want[i])))
	}
	if ref == 0 {
		return diff
	}
	return diff / ref
}
