package engine

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// benchTrainStep measures a training step (Forward then Backward with
// every initializer trainable) on m at the given input shape, next to the
// forward pass alone of the same program.
func benchTrainStep(b *testing.B, m *onnxpb.ModelProto, shape []int) {
	var tr []string
	for _, init := range m.Graph.Initializer {
		if init.DataType == int32(onnxpb.TensorProto_FLOAT) {
			tr = append(tr, init.Name)
		}
	}
	benchTrainStepOf(b, m, shape, tr)
}

// benchTrainStepOf is benchTrainStep with the given trainable tensors.
func benchTrainStepOf(b *testing.B, m *onnxpb.ModelProto, shape []int, tr []string) {
	inits := map[string]bool{}
	for _, t := range m.Graph.Initializer {
		inits[t.Name] = true
	}
	name := ""
	for _, in := range m.Graph.Input {
		if !inits[in.Name] {
			name = in.Name
			break
		}
	}
	p, err := Compile(m, Options{Trainable: tr, KeepForBackward: true, InputShapes: map[string][]int{name: shape}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	in := map[string]*Tensor{name: randTensor(rng, shape...)}
	seeds := map[string]*Tensor{}
	for _, o := range p.OutputNames() {
		seeds[o] = randTensor(rng, p.Shape(o)...)
	}
	run := func(b *testing.B, backward bool) {
		step := func() {
			if err := p.Forward(in); err != nil {
				b.Fatal(err)
			}
			if backward {
				if err := p.Backward(seeds); err != nil {
					b.Fatal(err)
				}
			}
		}
		step()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			step()
		}
		b.ReportMetric(float64(b.N*shape[0])/b.Elapsed().Seconds(), "images/s")
	}
	b.Run("forward", func(b *testing.B) { run(b, false) })
	b.Run("step", func(b *testing.B) {
		run(b, true)
		b.ReportMetric(float64(p.GradArenaBytes())/(1<<20), "grad-MiB")
	})
}

// BenchmarkTrainStepMobileNetV1 runs forward+backward of the
// Fashion-MNIST MobileNetV1 fixture (all weights trainable) at batch 64.
func BenchmarkTrainStepMobileNetV1(b *testing.B) {
	m := fixtureOrSynthetic(b, "mobilenetv1.onnx", func() *onnxpb.ModelProto { return mobileNetV1(0.25, 32, 10) })
	benchTrainStep(b, m, []int{64, 3, 32, 32})
}

// BenchmarkTrainStepMobileNetV1BN is the same with BatchNormalization
// kept (BN scale and shift trainable too).
func BenchmarkTrainStepMobileNetV1BN(b *testing.B) {
	m := fixtureOrSynthetic(b, "mobilenetv1_bn.onnx", func() *onnxpb.ModelProto { return mobileNetV1(0.25, 32, 10) })
	benchTrainStep(b, m, []int{64, 3, 32, 32})
}

// BenchmarkTrainStepShuffleNetV2 runs forward+backward of the
// Fashion-MNIST ShuffleNetV2 fixture (all weights trainable) at batch 64
// (skipped while the fixture is absent).
func BenchmarkTrainStepShuffleNetV2(b *testing.B) {
	path := filepath.Join("..", "testdata", "models", "shufflenetv2.onnx")
	m, err := onnxio.Load(path)
	if err != nil {
		testutil.Skipf(b, "fixture absent: %v", err)
	}
	benchTrainStep(b, m, []int{64, 3, 32, 32})
}

// BenchmarkTrainStepMobileNetV1Square trains only the weights of the
// square 1x1 convolutions (those LPR replaces) of the MobileNetV1 fixture
// at batch 64: the backward pass stops below the first of them.
func BenchmarkTrainStepMobileNetV1Square(b *testing.B) {
	m := fixtureOrSynthetic(b, "mobilenetv1.onnx", func() *onnxpb.ModelProto { return mobileNetV1(0.25, 32, 10) })
	shapes := map[string][]int64{}
	for _, init := range m.Graph.Initializer {
		shapes[init.Name] = init.Dims
	}
	var tr []string
	for _, n := range m.Graph.Node {
		if n.OpType != "Conv" || len(n.Input) < 2 {
			continue
		}
		if d := shapes[n.Input[1]]; len(d) == 4 && d[0] == d[1] && d[2] == 1 && d[3] == 1 {
			tr = append(tr, n.Input[1])
		}
	}
	if len(tr) == 0 {
		b.Fatal("no square 1x1 convolution")
	}
	benchTrainStepOf(b, m, []int{64, 3, 32, 32}, tr)
}
