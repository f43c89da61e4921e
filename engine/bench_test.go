package engine

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// benchModel runs Forward on m at the given input shape, reporting
// images per second and allocations.
func benchModel(b *testing.B, m *onnxpb.ModelProto, shape []int) {
	name := ""
	inits := map[string]bool{}
	for _, t := range m.Graph.Initializer {
		inits[t.Name] = true
	}
	for _, in := range m.Graph.Input {
		if !inits[in.Name] {
			name = in.Name
			break
		}
	}
	p, err := Compile(m, Options{InputShapes: map[string][]int{name: shape}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	in := map[string]*Tensor{name: randTensor(rand.New(rand.NewPCG(1, 2)), shape...)}
	if err := p.Forward(in); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := p.Forward(in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*shape[0])/b.Elapsed().Seconds(), "images/s")
	b.ReportMetric(float64(p.PeakActivationBytes())/(1<<20), "peak-MiB")
}

// fixtureOrSynthetic loads testdata/models/<file> when it exists, else
// returns the synthetic model.
func fixtureOrSynthetic(b *testing.B, file string, synth func() *onnxpb.ModelProto) *onnxpb.ModelProto {
	path := filepath.Join("..", "testdata", "models", file)
	if _, err := os.Stat(path); err == nil {
		m, err := onnxio.Load(path)
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	b.Logf("%s absent: using a synthetic model", path)
	return synth()
}

// BenchmarkMobileNetV1 runs the Fashion-MNIST MobileNetV1 fixture (32x32
// inputs) at batch 64.
func BenchmarkMobileNetV1(b *testing.B) {
	m := fixtureOrSynthetic(b, "mobilenetv1.onnx", func() *onnxpb.ModelProto { return mobileNetV1(1, 32, 10) })
	benchModel(b, m, []int{64, 3, 32, 32})
}

// BenchmarkShuffleNetV2 runs the Fashion-MNIST ShuffleNetV2 fixture at
// batch 64 (skipped while the fixture is absent).
func BenchmarkShuffleNetV2(b *testing.B) {
	path := filepath.Join("..", "testdata", "models", "shufflenetv2.onnx")
	m, err := onnxio.Load(path)
	if err != nil {
		b.Skipf("fixture absent: %v", err)
	}
	benchModel(b, m, []int{64, 3, 32, 32})
}

// BenchmarkMobileNetV1ImageNet runs a synthetic ImageNet-shaped
// MobileNetV1 1.0 (224x224) at batch 1 and 8.
func BenchmarkMobileNetV1ImageNet(b *testing.B) {
	m := mobileNetV1(1, 224, 1000)
	b.Run("batch1", func(b *testing.B) { benchModel(b, m, []int{1, 3, 224, 224}) })
	b.Run("batch8", func(b *testing.B) { benchModel(b, m, []int{8, 3, 224, 224}) })
}
