package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// ortTolerance is the largest accepted max|engine-ORT| / max|ORT| over an
// output.
const ortTolerance = 1e-4

// compareWithORT runs the model at path in the engine and in ONNX Runtime
// on the same seeded random inputs at the given batch size and checks every
// output's relative max-abs error. It returns the worst error.
func compareWithORT(t *testing.T, path string, batch int, opts Options) float64 {
	t.Helper()
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(batch), 42))
	names, shapes := testutil.GraphInputs(m, batch)
	inputs := map[string]*Tensor{}
	ortIn := map[string]ortrun.Tensor{}
	for _, in := range m.Graph.Input {
		if _, ok := shapes[in.Name]; ok && in.GetType().GetTensorType().GetElemType() != int32(onnxpb.TensorProto_FLOAT) {
			t.Fatalf("%s: input %q is not float", path, in.Name)
		}
	}
	for _, name := range names {
		x := randTensor(rng, shapes[name]...)
		inputs[name] = x
		ortIn[name] = ortrun.Tensor{Shape: testutil.Int64s(shapes[name]), Data: x.F}
	}
	opts.InputShapes = shapes
	if opts.Trainable != nil {
		// every float initializer trainable: nothing folds or fuses
		opts.Trainable = nil
		for _, tp := range m.Graph.Initializer {
			if tp.GetDataType() == int32(onnxpb.TensorProto_FLOAT) {
				opts.Trainable = append(opts.Trainable, tp.Name)
			}
		}
	}
	p, err := Compile(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	got, err := p.Run(inputs)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ortrun.NewSession(path, ortrun.Options{IntraOpThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	want, err := sess.Run(ortIn, nil)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for _, o := range m.Graph.Output {
		g, w := got[o.Name], want[o.Name]
		if g == nil || len(g.F) != len(w.Data) {
			t.Fatalf("%s output %q: engine %v, ORT shape %v", path, o.Name, g, w.Shape)
		}
		var maxDiff, maxRef float64
		for i, v := range w.Data {
			maxDiff = max(maxDiff, math.Abs(float64(g.F[i])-float64(v)))
			maxRef = max(maxRef, math.Abs(float64(v)))
		}
		rel := maxDiff / max(maxRef, 1e-30)
		worst = max(worst, rel)
		t.Logf("%s batch %d (trainable %v) output %q %v: max|diff| %.3g, max|ORT| %.3g, relative %.3g, peak activations %.2f MiB",
			filepath.Base(path), batch, len(opts.Trainable) > 0, o.Name, g.Shape, maxDiff, maxRef, rel, float64(p.PeakActivationBytes())/(1<<20))
		if rel > ortTolerance || math.IsNaN(rel) {
			t.Errorf("%s output %q: relative max-abs error %.3g > %g", path, o.Name, rel, ortTolerance)
		}
	}
	return worst
}

func TestORTFixtures(t *testing.T) {
	testutil.RequireORT(t)
	paths := testutil.Fixtures(t)
	if len(paths) == 0 {
		testutil.Skip(t, "no fixture models in testdata/models")
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			for _, batch := range []int{1, 64} {
				compareWithORT(t, path, batch, Options{})
			}
			// the training configuration: parameters not folded, no fusion
			compareWithORT(t, path, 3, Options{Trainable: []string{}, KeepForBackward: true})
		})
	}
}

func TestORTImageNet(t *testing.T) {
	testutil.RequireORT(t)
	var paths []string
	for _, d := range testutil.ImageNetDirs() {
		if p, _ := filepath.Glob(filepath.Join(d, "*.onnx")); len(p) > 0 {
			paths = p
			break
		}
	}
	if len(paths) == 0 {
		testutil.Skipf(t, "no ImageNet-shaped models in %v; generate them with testdata/gen/export_imagenet.py", testutil.ImageNetDirs())
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) { compareWithORT(t, path, 2, Options{}) })
	}
}

// shuffleNetLike builds a graph with the operators of ShuffleNetV2 and
// MobileNetV3 (Split, channel shuffle by Reshape/Transpose, Concat, pools,
// squeeze-excite with HardSigmoid and Mul, HardSwish, Clip, ReduceMean,
// Sub/Div normalization, MatMul, Softmax).
func shuffleNetLike() *onnxpb.ModelProto {
	b := newGraph(14)
	x := b.input("input", -1, 3, 32, 32)
	x = b.node("Sub", []string{x, b.initF([]float32{0.4, 0.5, 0.6}, 1, 3, 1, 1)})
	x = b.node("Div", []string{x, b.initF([]float32{0.2, 0.25, 0.3}, 1, 3, 1, 1)})
	x = b.convRelu(x, 3, 24, 3, 2, 1)
	x = b.node("MaxPool", []string{x}, attrInts("kernel_shape", 3, 3), attrInts("strides", 2, 2), attrInts("pads", 1, 1, 1, 1))
	for i := 0; i < 2; i++ {
		split := b.node("Split", []string{x, b.initI([]int64{12, 12}, 2)}, attrInt("axis", 1))
		b.g.Node[len(b.g.Node)-1].Output = []string{split + "_a", split + "_b"}
		br := b.convRelu(split+"_b", 12, 12, 1, 1, 1)
		br = b.node("Conv", []string{br, b.weight(0.3, 12, 1, 3, 3), b.weight(0.1, 12)}, attrInts("pads", 1, 1, 1, 1), attrInt("group", 12))
		br = b.convRelu(br, 12, 12, 1, 1, 1)
		x = b.node("Concat", []string{split + "_a", br}, attrInt("axis", 1))
		x = b.node("Reshape", []string{x, b.initI([]int64{0, 2, 12, 8, 8}, 5)})
		x = b.node("Transpose", []string{x}, attrInts("perm", 0, 2, 1, 3, 4))
		x = b.node("Reshape", []string{x, b.initI([]int64{-1, 24, 8, 8}, 4)})
	}
	// squeeze-excite
	se := b.node("ReduceMean", []string{x}, attrInts("axes", 2, 3), attrInt("keepdims", 1))
	se = b.convRelu(se, 24, 8, 1, 1, 1)
	se = b.node("Conv", []string{se, b.weight(0.3, 24, 8, 1, 1), b.weight(0.1, 24)})
	se = b.node("HardSigmoid", []string{se}, attrFloat("alpha", 1.0/6), attrFloat("beta", 0.5))
	x = b.node("Mul", []string{x, se})
	x = b.node("HardSwish", []string{x})
	feat := x
	x = b.node("AveragePool", []string{x}, attrInts("kernel_shape", 3, 3), attrInts("strides", 2, 2), attrInts("pads", 1, 1, 1, 1), attrInt("count_include_pad", 0))
	x = b.node("Clip", []string{x, b.initF([]float32{-1}), b.initF([]float32{4})})
	x = b.node("GlobalAveragePool", []string{x})
	x = b.node("Flatten", []string{x})
	x = b.node("MatMul", []string{x, b.weight(0.2, 24, 16)})
	x = b.node("Sigmoid", []string{x})
	x = b.node("Gemm", []string{x, b.weight(0.2, 10, 16), b.weight(0.1, 10)}, attrInt("transB", 1))
	b.output(x) // logits, and the features before pooling, are outputs too
	b.output(feat)
	x = b.node("Softmax", []string{x}, attrInt("axis", 1))
	b.output(x)
	return b.model()
}

func TestORTSynthetic(t *testing.T) {
	testutil.RequireORT(t)
	dir := t.TempDir()
	models := map[string]*onnxpb.ModelProto{
		"mobilenetv1_0.5_64.onnx": mobileNetV1(0.5, 64, 100),
		"shufflenet_like.onnx":    shuffleNetLike(),
	}
	for name, m := range models {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			if err := onnxio.Save(path, m, onnxio.SaveOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, batch := range []int{1, 3} {
				compareWithORT(t, path, batch, Options{})
			}
			compareWithORT(t, path, 2, Options{Trainable: []string{}, KeepForBackward: true, Threads: 1})
		})
	}
}

// BenchmarkVsORT times the engine and ONNX Runtime (all graph
// optimizations) with the same number of threads (ENGINE_BENCH_THREADS,
// default 2) on the same models and batch sizes: the fixture models at
// batch 64 and the ImageNet-shaped exports at batch 1 and 8. Besides wall
// time it reports process CPU time per run, which is steadier when other
// processes compete for the cores (with one thread it is the fairest
// comparison; with more, ORT's spinning threads inflate its CPU time).
func BenchmarkVsORT(b *testing.B) {
	threads := 2
	if v, err := strconv.Atoi(os.Getenv("ENGINE_BENCH_THREADS")); err == nil && v > 0 {
		threads = v
	}
	testutil.RequireORT(b)
	type cfg struct {
		path  string
		batch int
	}
	var cfgs []cfg
	fixtures, _ := filepath.Glob(filepath.Join("..", "testdata", "models", "*.onnx"))
	for _, p := range fixtures {
		cfgs = append(cfgs, cfg{p, 64})
	}
	for _, d := range testutil.ImageNetDirs() {
		ps, _ := filepath.Glob(filepath.Join(d, "*.onnx"))
		for _, p := range ps {
			cfgs = append(cfgs, cfg{p, 1}, cfg{p, 8})
		}
		if len(ps) > 0 {
			break
		}
	}
	if len(cfgs) == 0 {
		testutil.Skip(b, "no fixture or ImageNet-shaped models")
	}
	for _, c := range cfgs {
		m, err := onnxio.Load(c.path)
		if err != nil {
			b.Fatal(err)
		}
		in := m.Graph.Input[0]
		var shape []int
		var dims []int64
		for i, d := range in.GetType().GetTensorType().GetShape().GetDim() {
			v := int(d.GetDimValue())
			if i == 0 {
				v = c.batch
			}
			shape, dims = append(shape, v), append(dims, int64(v))
		}
		x := randTensor(rand.New(rand.NewPCG(1, 1)), shape...)
		name := fmt.Sprintf("%s/b%d", filepath.Base(c.path), c.batch)
		b.Run("engine/"+name, func(b *testing.B) { benchModelThreads(b, m, shape, threads) })
		b.Run("ort/"+name, func(b *testing.B) {
			sess, err := ortrun.NewSession(c.path, ortrun.Options{IntraOpThreads: threads})
			if err != nil {
				b.Fatal(err)
			}
			defer sess.Close()
			feed := map[string]ortrun.Tensor{in.Name: {Shape: dims, Data: x.F}}
			if _, err := sess.Run(feed, nil); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			cpu0 := cpuTime()
			for b.Loop() {
				if _, err := sess.Run(feed, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/1e6/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(b.N*c.batch)/b.Elapsed().Seconds(), "images/s")
		})
	}
}
