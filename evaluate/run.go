package evaluate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Input describes a model's image input and logits output.
type Input struct {
	// Name is the graph input fed with images, Output the graph output
	// read as logits.
	Name, Output string
	// Channels, Height and Width are the image shape the model expects.
	Channels, Height, Width int
	// Batch is the input's fixed batch size, or 0 when it is dynamic.
	Batch int
}

// ModelInput finds the image input of m: the one graph input that is not an
// initializer, of rank 4 (N,C,H,W) with fixed C, H and W, and the first graph
// output.
func ModelInput(m *onnxpb.ModelProto) (Input, error) {
	g := m.GetGraph()
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	var ins []*onnxpb.ValueInfoProto
	for _, v := range g.GetInput() {
		if !inits[v.GetName()] {
			ins = append(ins, v)
		}
	}
	if len(ins) != 1 {
		return Input{}, fmt.Errorf("model has %d graph inputs; evaluation needs exactly one image input", len(ins))
	}
	if len(g.GetOutput()) == 0 {
		return Input{}, errors.New("model has no graph output")
	}
	v := ins[0]
	dims := v.GetType().GetTensorType().GetShape().GetDim()
	if len(dims) != 4 {
		return Input{}, fmt.Errorf("input %q has rank %d; an image input is N,C,H,W", v.GetName(), len(dims))
	}
	var chw [3]int
	for i := range chw {
		d := dims[i+1]
		if _, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); !ok || d.GetDimValue() <= 0 {
			return Input{}, fmt.Errorf("input %q: dimension %d is not fixed; an image input needs fixed C, H and W", v.GetName(), i+1)
		}
		chw[i] = int(d.GetDimValue())
	}
	in := Input{Name: v.GetName(), Output: g.GetOutput()[0].GetName(), Channels: chw[0], Height: chw[1], Width: chw[2]}
	if d := dims[0]; d.GetDimValue() > 0 {
		in.Batch = int(d.GetDimValue())
	}
	return in, nil
}

// Options control Run.
type Options struct {
	// Batch is the largest batch size (default 64).
	Batch int
	// Threads is passed to the engine (0: all cores).
	Threads int
	// Limit stops after this many samples (0: all).
	Limit int
	// Progress, when set, is called after every batch with the samples
	// done so far.
	Progress func(done int)
	// Record, when set, receives model 0's logits on every sample (the
	// reference that later runs compare against without running it).
	Record *Reference
	// Against, when set, is the reference that every model is compared
	// with: Result.Fidelity[k] then compares model k (not k+1) with it.
	// The samples must be those it was recorded on, in the same order.
	Against *Reference
}

// Reference is one model's logits over a fixed sequence of samples.
type Reference struct {
	// Logits holds Classes values per sample, N samples.
	Logits  []float32
	Classes int
	N       int
}

// ModelResult is what Run measured for one model.
type ModelResult struct {
	Accuracy Accuracy `json:"accuracy"`
	// Seconds is the time spent running the model, excluding data loading.
	Seconds float64 `json:"seconds"`
}

// ImagesPerSecond returns the model's throughput.
func (r ModelResult) ImagesPerSecond() float64 {
	if r.Seconds == 0 {
		return 0
	}
	return float64(r.Accuracy.N) / r.Seconds
}

// Result is the outcome of Run.
type Result struct {
	// Models holds one entry per model, in the order given.
	Models []ModelResult
	// Fidelity[k] compares model k+1 with model 0 (model k with
	// Options.Against when it is set).
	Fidelity []Fidelity
	// Classes is the number of logits per sample.
	Classes int
}

// Run feeds every batch of src to each model and measures accuracy (where
// labels exist), throughput, and the fidelity of models[1:] to models[0]
// (of every model to opts.Against when it is set). All models must share
// the image input shape of models[0].
func Run(ctx context.Context, models []*onnxpb.ModelProto, src dataset.Batches, opts Options) (*Result, error) {
	if len(models) == 0 {
		return nil, errors.New("evaluate: no model")
	}
	if opts.Batch <= 0 {
		opts.Batch = 64
	}
	in, err := ModelInput(models[0])
	if err != nil {
		return nil, fmt.Errorf("model 1: %w", err)
	}
	inputs := make([]Input, len(models))
	engines := make([]*engine.Model, len(models))
	defer func() {
		for _, e := range engines {
			if e != nil {
				e.Close()
			}
		}
	}()
	for i, m := range models {
		if inputs[i], err = ModelInput(m); err != nil {
			return nil, fmt.Errorf("model %d: %w", i+1, err)
		}
		if inputs[i].Channels != in.Channels || inputs[i].Height != in.Height || inputs[i].Width != in.Width {
			return nil, fmt.Errorf("model %d takes %dx%dx%d images, model 1 takes %dx%dx%d", i+1,
				inputs[i].Channels, inputs[i].Height, inputs[i].Width, in.Channels, in.Height, in.Width)
		}
		if engines[i], err = engine.NewModel(m, engine.Options{Threads: opts.Threads}); err != nil {
			return nil, fmt.Errorf("model %d: %w", i+1, err)
		}
	}
	size := in.Channels * in.Height * in.Width
	x := make([]float32, opts.Batch*size)
	labels := make([]int, opts.Batch)
	res := &Result{Models: make([]ModelResult, len(models)), Fidelity: make([]Fidelity, len(models)-1)}
	if opts.Against != nil {
		res.Fidelity = make([]Fidelity, len(models))
		res.Classes = opts.Against.Classes
	}
	if opts.Record != nil {
		*opts.Record = Reference{}
	}
	logits := make([][]float32, len(models))
	var pad []float32
	done := 0
	for opts.Limit <= 0 || done < opts.Limit {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := src.Next(x, labels)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read samples after %d: %w", done, err)
		}
		if n == 0 {
			break
		}
		if opts.Limit > 0 && done+n > opts.Limit {
			n = opts.Limit - done
		}
		for i, e := range engines {
			start := time.Now()
			out, err := runBatch(e, inputs[i], x[:n*size], n, &pad)
			res.Models[i].Seconds += time.Since(start).Seconds()
			if err != nil {
				return nil, fmt.Errorf("model %d: %w", i+1, err)
			}
			if len(out) == 0 || len(out)%n != 0 {
				return nil, fmt.Errorf("model %d: output %q is not a float tensor of %d rows", i+1, inputs[i].Output, n)
			}
			classes := len(out) / n
			if res.Classes == 0 {
				res.Classes = classes
			} else if classes != res.Classes {
				return nil, fmt.Errorf("model %d gives %d logits per sample, model 1 gives %d", i+1, classes, res.Classes)
			}
			logits[i] = out
			if err := res.Models[i].Accuracy.Add(out, classes, labels[:n]); err != nil {
				return nil, fmt.Errorf("model %d: %w", i+1, err)
			}
		}
		if r := opts.Record; r != nil {
			r.Logits = append(r.Logits, logits[0]...)
			r.Classes, r.N = res.Classes, r.N+n
		}
		if a := opts.Against; a != nil {
			if (done+n)*a.Classes > len(a.Logits) {
				return nil, fmt.Errorf("the reference holds %d samples, the data more", a.N)
			}
			ref := a.Logits[done*a.Classes : (done+n)*a.Classes]
			for k := range models {
				if err := res.Fidelity[k].Add(ref, logits[k], res.Classes); err != nil {
					return nil, fmt.Errorf("model %d against the reference: %w", k+1, err)
				}
			}
		} else {
			for k := 1; k < len(models); k++ {
				if err := res.Fidelity[k-1].Add(logits[0], logits[k], res.Classes); err != nil {
					return nil, fmt.Errorf("model %d against model 1: %w", k+1, err)
				}
			}
		}
		done += n
		if opts.Progress != nil {
			opts.Progress(done)
		}
	}
	if done == 0 {
		return nil, errors.New("evaluate: the data holds no samples")
	}
	if a := opts.Against; a != nil && done != a.N {
		return nil, fmt.Errorf("evaluate: compared %d of the reference's %d samples", done, a.N)
	}
	return res, nil
}

// runBatch runs one model on n samples and returns its logits. A model
// with a fixed batch size runs on consecutive chunks of that size, the last
// one padded with zeros (pad is scratch space reused across calls).
func runBatch(e *engine.Model, in Input, x []float32, n int, pad *[]float32) ([]float32, error) {
	size := in.Channels * in.Height * in.Width
	fb := in.Batch
	if fb <= 0 {
		fb = n
	}
	var logits []float32
	for off := 0; off < n; off += fb {
		m := min(fb, n-off)
		chunk := x[off*size : (off+m)*size]
		if m < fb {
			*pad = append((*pad)[:0], chunk...)
			*pad = append(*pad, make([]float32, (fb-m)*size)...)
			chunk = *pad
		}
		out, err := e.Run(map[string]*engine.Tensor{in.Name: engine.NewTensorF(chunk, fb, in.Channels, in.Height, in.Width)})
		if err != nil {
			return nil, fmt.Errorf("run a batch of %d: %w", fb, err)
		}
		t := out[in.Output]
		if t == nil || len(t.F) == 0 || len(t.F)%fb != 0 {
			return nil, fmt.Errorf("output %q is not a float tensor of %d rows", in.Output, fb)
		}
		if fb == n {
			return t.F, nil
		}
		logits = append(logits, t.F[:m*len(t.F)/fb]...)
	}
	return logits, nil
}
