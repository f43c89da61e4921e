package rankalloc

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// runOn runs m on the n seeded standard-normal inputs that MetricRandom
// uses and returns all outputs.
func runOn(t *testing.T, m *onnxpb.ModelProto, n int, seed uint64) []float32 {
	t.Helper()
	in, err := evaluate.ModelInput(m)
	if err != nil {
		t.Fatal(err)
	}
	size := in.Channels * in.Height * in.Width
	r, err := dataset.Noise{Count: n, Size: size, Seed: seed}.Open(n)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	x := make([]float32, n*size)
	if k, err := r.Next(x, make([]int, n)); err != nil || k != n {
		t.Fatalf("noise: %d of %d inputs, %v", k, n, err)
	}
	prog, err := engine.Compile(m, engine.Options{Threads: 2, InputShapes: map[string][]int{in.Name: {n, in.Channels, in.Height, in.Width}}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	out, err := prog.Run(map[string]*engine.Tensor{in.Name: engine.NewTensorF(x, n, in.Channels, in.Height, in.Width)})
	if err != nil {
		t.Fatal(err)
	}
	return out[in.Output].F
}

// TestRandomSensitivity: MetricRandom's loss of a layer at a rank is the
// squared relative error Σ‖f̂(x) − f(x)‖² / Σ‖f(x)‖² of the model
// rewritten with that layer's factors, run separately on the same random
// inputs, and Allocate reports the metric.
func TestRandomSensitivity(t *testing.T) {
	for _, name := range []string{"mobilenetv1.onnx", "mobilenetv1_bn.onnx"} {
		t.Run(name, func(t *testing.T) {
			m := loadFixture(t, name)
			opts := weightOptions(16)
			opts.Random, opts.RandomSeed = 8, 5
			if got := opts.Metric(); got != MetricRandom {
				t.Fatalf("metric %q", got)
			}
			base, err := BasePlan(context.Background(), m, opts)
			if err != nil {
				t.Fatal(err)
			}
			sens, err := Measure(context.Background(), m, base, opts)
			if err != nil {
				t.Fatal(err)
			}
			ref := runOn(t, m, opts.Random, opts.RandomSeed)
			var norm float64
			for _, v := range ref {
				norm += float64(v) * float64(v)
			}
			checked := 0
			for i := range base.Layers {
				l := &base.Layers[i]
				var s *Sensitivity
				for k := range sens {
					if sens[k].Name == l.Name {
						s = &sens[k]
					}
				}
				if s == nil {
					continue
				}
				rank := s.Ranks[0]
				f, err := svd.Factorize(l.W, l.Channels, l.InputChannels(), rank, l.Residual, opts.Plan.SVD)
				if err != nil {
					t.Fatal(err)
				}
				p := planWith(t, m, svd.Policy{}, convert.Selection{})
				p.Layers[i].Replace, p.Layers[i].Rank, p.Layers[i].Factors = true, rank, f
				got := runOn(t, apply(t, m, p), opts.Random, opts.RandomSeed)
				var d float64
				for k, v := range got {
					e := float64(v) - float64(ref[k])
					d += e * e
				}
				want := d / norm
				t.Logf("%s rank %d: %.6g measured, %.6g rewritten", l.Name, rank, s.Loss[0], want)
				if !(want > 0) || math.Abs(s.Loss[0]-want) > 1e-3*want+1e-9 {
					t.Errorf("%s rank %d: loss %.6g, the rewritten model's error %.6g", l.Name, rank, s.Loss[0], want)
				}
				checked++
			}
			if checked < 2 {
				t.Fatalf("%d layers checked", checked)
			}
			a, err := Allocate(m, base, sens, Budget{Resource: Params, Fraction: 0.9}, opts)
			if err != nil {
				t.Fatal(err)
			}
			if a.Metric != MetricRandom {
				t.Errorf("allocation metric %q", a.Metric)
			}
		})
	}
}

// TestCheckRandom: the fixture's outputs depend on its random inputs;
// with the first convolution's weights zeroed they no longer do, and
// CheckRandom says so with a *ConstantOutputsError.
func TestCheckRandom(t *testing.T) {
	m := loadFixture(t, "mobilenetv1.onnx")
	opts := Options{Random: DefaultRandom, RandomSeed: 1, Threads: 2}
	if err := CheckRandom(m, opts); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	var first string
	for _, n := range m.GetGraph().GetNode() {
		if n.GetOpType() == "Conv" {
			first = n.GetInput()[1]
			break
		}
	}
	inits := m.GetGraph().GetInitializer()
	for i, init := range inits {
		if init.GetName() != first {
			continue
		}
		w, err := onnxio.Float32s(init)
		if err != nil {
			t.Fatal(err)
		}
		inits[i] = onnxio.NewFloat32(first, init.GetDims(), make([]float32, len(w)))
	}
	err := CheckRandom(m, opts)
	var c *ConstantOutputsError
	if !errors.As(err, &c) || c.Spread >= MinRandomSpread || c.Inputs != DefaultRandom {
		t.Fatalf("first convolution zeroed: %v", err)
	}
}

// TestCheckRandomImageNet: the ImageNet-shaped MobileNetV1 1.0 export with
// seeded random BatchNorm statistics loses the signal on the way to its
// logits (CheckRandom refuses it), while the same network with statistics
// measured on random images (testdata/gen/export_imagenet.py,
// mobilenetv1_1.0_calib.onnx) keeps it: the latter is the one on which a
// data-free latency budget's fidelity can be judged (bench/compress).
func TestCheckRandomImageNet(t *testing.T) {
	opts := Options{Random: DefaultRandom, RandomSeed: 1, Threads: 2}
	for _, tc := range []struct {
		name     string
		constant bool
	}{
		{"mobilenetv1_1.0.onnx", true},
		{"mobilenetv1_1.0_calib.onnx", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := onnxio.Load(testutil.ImageNetModel(t, tc.name))
			if err != nil {
				t.Fatal(err)
			}
			err = CheckRandom(m, opts)
			var c *ConstantOutputsError
			if got := errors.As(err, &c); got != tc.constant || (err != nil && c == nil) {
				t.Fatalf("CheckRandom = %v, want constant outputs %v", err, tc.constant)
			}
		})
	}
}
