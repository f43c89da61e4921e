package finetune

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/engine/kernels"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Covariance is the channel second-moment matrix of one activation:
// Sum[i*C+j] = Σ x_i x_j over every sample and pixel seen, in float64.
type Covariance struct {
	C      int
	Sum    []float64
	Pixels int64
}

// Calibrate runs the teacher on up to limit samples of src (one epoch at
// most; 0 means one epoch) and returns the covariance of every named value,
// each an NCHW activation inside the teacher (typically the inputs of the
// layers to factorize).
func Calibrate(ctx context.Context, teacher *onnxpb.ModelProto, values []string, src dataset.Batches, batch, limit, threads int) (map[string]*Covariance, error) {
	in, err := evaluate.ModelInput(teacher)
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	if batch <= 0 {
		return nil, fmt.Errorf("calibrate: batch %d must be positive", batch)
	}
	if in.Batch > 0 && in.Batch != batch {
		return nil, fmt.Errorf("calibrate: input %q has a fixed batch size of %d; calibrate with batch %d or export the model with a dynamic batch", in.Name, in.Batch, in.Batch)
	}
	md, err := engine.NewModel(teacher, engine.Options{Threads: threads, Outputs: values})
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	defer md.Close()
	kc := kernels.NewContext(threads)
	defer kc.Close()
	size := in.Channels * in.Height * in.Width
	x := make([]float32, batch*size)
	labels := make([]int, batch)
	covs := map[string]*Covariance{}
	acc := map[string][]float32{}
	seen := 0
	for limit <= 0 || seen < limit {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := src.Next(x, labels)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("calibrate: %w", err)
		}
		if limit > 0 {
			n = min(n, limit-seen)
		}
		out, err := md.Run(map[string]*engine.Tensor{in.Name: engine.NewTensorF(x[:n*size], n, in.Channels, in.Height, in.Width)})
		if err != nil {
			return nil, fmt.Errorf("calibrate: %w", err)
		}
		for _, v := range values {
			t := out[v]
			if t == nil || len(t.Shape) != 4 || len(t.F) == 0 {
				return nil, fmt.Errorf("calibrate: value %q is not an NCHW float activation", v)
			}
			c, hw := t.Shape[1], t.Shape[2]*t.Shape[3]
			cv := covs[v]
			if cv == nil {
				cv = &Covariance{C: c, Sum: make([]float64, c*c)}
				covs[v] = cv
				acc[v] = make([]float32, c*c)
			}
			a := acc[v]
			clear(a)
			// Per image, X is C x HW: accumulate X Xᵀ in float32 over one
			// batch, then in float64 across batches.
			for i := 0; i < t.Shape[0]; i++ {
				xi := t.F[i*c*hw : (i+1)*c*hw]
				kc.Sgemm(false, true, c, c, hw, 1, xi, hw, xi, hw, 1, a, c)
			}
			for k, s := range a {
				cv.Sum[k] += float64(s)
			}
			cv.Pixels += int64(t.Shape[0] * hw)
		}
		seen += n
	}
	if seen == 0 {
		return nil, errors.New("calibrate: the data holds no samples")
	}
	return covs, nil
}
