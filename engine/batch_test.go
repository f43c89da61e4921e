package engine

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// batchForwardTolerance bounds max|batched - one thread| / max|one thread|
// for the outputs of a batch-parallel forward pass. Every image is
// computed by the same kernels in the same order whatever slice it is in,
// so the outputs are expected to be bit-identical; the bound only allows
// for kernels that block differently for different image counts.
const batchForwardTolerance = 1e-6

// batchGradTolerance bounds max|g_W - g_1| / max|g_1| for every parameter
// gradient of a batch-parallel backward pass with W slices against one
// thread. The per-slice gradients are sums over the slice's images, and
// the slices' sums are added in worker order, so the result differs from
// the one-thread sum over all images only by float32 reassociation: a
// relative error of a few ulps times log2(batch), far below 1e-5.
const batchGradTolerance = 1e-5

// batchCase is a model to run batch-parallel.
type batchCase struct {
	name  string
	model func(t testing.TB) *onnxpb.ModelProto
}

func batchCases() []batchCase {
	var cs []batchCase
	for _, f := range []string{"mobilenetv1.onnx", "shufflenetv2.onnx", "mobilenetv1_bn.onnx"} {
		cs = append(cs, batchCase{f, func(t testing.TB) *onnxpb.ModelProto { return lprFixture(t, f, "") }})
	}
	for _, res := range []string{"identity", "dw3"} {
		cs = append(cs, batchCase{"mobilenetv1.onnx/lpr-" + res, func(t testing.TB) *onnxpb.ModelProto { return lprFixture(t, "mobilenetv1.onnx", res) }})
	}
	return cs
}

// convWeights returns the names of the rank-4 float initializers.
func convWeights(m *onnxpb.ModelProto) []string {
	var names []string
	for _, t := range m.Graph.Initializer {
		if len(t.Dims) == 4 && t.DataType == int32(onnxpb.TensorProto_FLOAT) {
			names = append(names, t.Name)
		}
	}
	return names
}

// TestBatchedForwardMatchesOneThread runs the fixtures (and LPR models
// made from them) at batch 7 with 2, 3 and 7 workers, and at batch 128
// with 1 and 2 workers (cut into more slices than workers, for the cache,
// and claimed dynamically), and checks the outputs against one op-level
// thread, and that two runs agree bit for bit.
func TestBatchedForwardMatchesOneThread(t *testing.T) {
	for _, tc := range batchCases() {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.model(t)
			batchedForward(t, m, 7, []int{2, 3, 7})
			batchedForward(t, m, 128, []int{1, 2})
		})
	}
}

func batchedForward(t *testing.T, m *onnxpb.ModelProto, batch int, workerCounts []int) {
	{
		{
			name, out := m.Graph.Input[0].Name, m.Graph.Output[0].Name
			shape := []int{batch, 3, 32, 32}
			x := randTensor(rand.New(rand.NewPCG(3, 4)), shape...)
			opts := Options{Threads: 1, InputShapes: map[string][]int{name: shape}}
			ref := mustCompile(t, m, opts)
			defer ref.Close()
			want, err := ref.Run(map[string]*Tensor{name: x})
			if err != nil {
				t.Fatal(err)
			}
			for _, workers := range workerCounts {
				opts.Threads = workers
				b, err := CompileBatched(m, opts, workers)
				if err != nil {
					t.Fatal(err)
				}
				if b.Workers() != workers || b.Slices() < workers || b.Slices()%workers != 0 {
					t.Fatalf("%d workers asked, %d workers and %d slices compiled", workers, b.Workers(), b.Slices())
				}
				var runs [2][]float32
				for i := range runs {
					if err := b.Forward(map[string]*Tensor{name: x}); err != nil {
						t.Fatal(err)
					}
					runs[i] = slices.Clone(b.Value(out).F)
				}
				b.Close()
				e := relMaxAbs(runs[0], want[out].F)
				t.Logf("batch %d, %d workers, %d slices: output relative max-abs error %.3g", batch, workers, b.Slices(), e)
				if e > batchForwardTolerance {
					t.Errorf("batch %d, %d workers: relative max-abs error %.3g > %g", batch, workers, e, batchForwardTolerance)
				}
				if !slices.Equal(runs[0], runs[1]) {
					t.Errorf("batch %d, %d workers: two runs differ", batch, workers)
				}
			}
		}
	}
}

// TestBatchedBackwardMatchesOneThread trains every convolution weight of
// the fixtures (and LPR models) at batch 6 and checks that the gradients
// with 2 and 4 batch slices agree with one thread within
// batchGradTolerance, are bit-identical across runs and across separately
// compiled programs with the same number of slices, and that a single
// slice gives exactly the gradients of a Program.
func TestBatchedBackwardMatchesOneThread(t *testing.T) {
	for _, tc := range batchCases() {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.model(t)
			batchedBackward(t, m, 6, []int{1, 2, 4})
			batchedBackward(t, m, 64, []int{2})
		})
	}
}

func batchedBackward(t *testing.T, m *onnxpb.ModelProto, batch int, workerCounts []int) {
	{
		{
			name, out := m.Graph.Input[0].Name, m.Graph.Output[0].Name
			shape := []int{batch, 3, 32, 32}
			rng := rand.New(rand.NewPCG(5, 6))
			x := randTensor(rng, shape...)
			opts := Options{Threads: 1, InputShapes: map[string][]int{name: shape}, Trainable: convWeights(m), KeepForBackward: true}
			ref := mustCompile(t, m, opts)
			defer ref.Close()
			if err := ref.Forward(map[string]*Tensor{name: x}); err != nil {
				t.Fatal(err)
			}
			dOut := randTensor(rng, ref.Value(out).Shape...)
			if err := ref.Backward(map[string]*Tensor{out: dOut}); err != nil {
				t.Fatal(err)
			}
			grads := func(workers int) map[string][]float32 {
				o := opts
				o.Threads = workers
				b, err := CompileBatched(m, o, workers)
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				if b.Workers() != workers {
					t.Fatalf("%d workers asked, %d compiled", workers, b.Workers())
				}
				if workers > 1 && (b.Slices() < workers || b.Slices()%workers != 0) {
					t.Fatalf("%d slices for %d workers", b.Slices(), workers)
				}
				var first map[string][]float32
				for run := range 2 {
					if err := b.Forward(map[string]*Tensor{name: x}); err != nil {
						t.Fatal(err)
					}
					if err := b.Backward(map[string]*Tensor{out: dOut}); err != nil {
						t.Fatal(err)
					}
					g := map[string][]float32{}
					for _, n := range b.ParamNames() {
						g[n] = slices.Clone(b.Grad(n))
					}
					if run == 0 {
						first = g
						continue
					}
					for n := range g {
						if !slices.Equal(g[n], first[n]) {
							t.Errorf("%d workers: gradient of %q differs between two runs", workers, n)
						}
					}
				}
				return first
			}
			for _, workers := range workerCounts {
				g := grads(workers)
				worst := 0.0
				for _, n := range ref.ParamNames() {
					want := ref.Grad(n)
					if workers == 1 && !slices.Equal(g[n], want) {
						t.Errorf("1 worker: gradient of %q is not the Program's", n)
					}
					e := relMaxAbs(g[n], want)
					worst = max(worst, e)
					if e > batchGradTolerance {
						t.Errorf("batch %d, %d workers: gradient of %q: relative max-abs error %.3g > %g", batch, workers, n, e, batchGradTolerance)
					}
				}
				t.Logf("batch %d, %d workers: largest relative max-abs gradient error %.3g", batch, workers, worst)
				if workers > 1 {
					again := grads(workers)
					for n := range g {
						if !slices.Equal(g[n], again[n]) {
							t.Errorf("%d workers: gradient of %q differs between two compiled programs", workers, n)
						}
					}
				}
			}
		}
	}
}

// TestBatchedSharesWeights checks that the workers read the same
// parameter and folded-weight storage (no copy per worker), so that an
// update through Param reaches every slice.
func TestBatchedSharesWeights(t *testing.T) {
	m := lprFixture(t, "mobilenetv1_bn.onnx", "")
	name, out := m.Graph.Input[0].Name, m.Graph.Output[0].Name
	shape := []int{4, 3, 32, 32}
	tr := convWeights(m)
	b, err := CompileBatched(m, Options{Threads: 2, InputShapes: map[string][]int{name: shape}, Trainable: tr[:1]}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	checked := 0
	for _, v := range b.Program(0).values {
		if v.konst == nil && !v.param || v.def >= 0 || len(v.shape) < 2 || b.Program(0).byName[v.name] != v {
			continue
		}
		w := b.Program(1).byName[v.name]
		if w == nil || &w.t.F[0] != &v.t.F[0] {
			t.Errorf("weight %q is not shared between workers", v.name)
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no weights checked")
	}
	if len(b.Program(0).bnFolded) == 0 {
		t.Fatal("no BatchNormalization was folded; the test needs a model with one")
	}
	for n, t0 := range b.Program(0).bnFolded {
		if t1 := b.Program(1).bnFolded[n]; t1 == nil || &t1.F[0] != &t0.F[0] {
			t.Errorf("folded weight %q is not shared between workers", n)
		}
	}
	// an update through Param changes both slices' outputs alike
	x := NewTensor(shape...)
	for i := range x.F {
		x.F[i] = float32(i%7) - 3
	}
	p := b.Param(tr[0])
	for i := range p.F {
		p.F[i] *= -1
	}
	if err := b.Forward(map[string]*Tensor{name: x}); err != nil {
		t.Fatal(err)
	}
	y := b.Value(out)
	per := len(y.F) / 4
	for i := 1; i < 4; i++ {
		if !slices.Equal(y.F[:per], y.F[i*per:(i+1)*per]) && slices.Equal(x.F[:len(x.F)/4], x.F[i*len(x.F)/4:(i+1)*len(x.F)/4]) {
			t.Errorf("image %d: same input, different output after a shared update", i)
		}
	}
}

// TestChooseWorkers checks the split the cost model picks: batch slices
// for a batch of small images, op-level for a batch of one.
func TestChooseWorkers(t *testing.T) {
	m := lprFixture(t, "mobilenetv1.onnx", "")
	name := m.Graph.Input[0].Name
	for _, tc := range []struct {
		batch, threads, want int
	}{
		{64, 2, 2},
		{64, 4, 4},
		{1, 2, 1},
		{8, 1, 1},
	} {
		b, err := CompileBatched(m, Options{Threads: tc.threads, InputShapes: map[string][]int{name: {tc.batch, 3, 32, 32}}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Workers(); got != tc.want {
			t.Errorf("batch %d on %d threads: %d workers, want %d", tc.batch, tc.threads, got, tc.want)
		}
		b.Close()
	}
	// ImageNet-shaped planes: a batch of one cannot be cut, and three
	// images on two threads balance worse than op-level splits of 224x224
	// convolutions
	big, err := onnxio.Load(testutil.ImageNetModel(t, "mobilenetv1_1.0.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	name = big.Graph.Input[0].Name
	for _, tc := range []struct{ batch, threads, want int }{{1, 2, 1}, {3, 2, 1}, {16, 2, 2}} {
		probe := probeOne(big, Options{}, map[string][]int{name: {tc.batch, 3, 224, 224}})
		if probe == nil {
			t.Fatal("the ImageNet-shaped model does not compile for one image")
		}
		w := chooseWorkers(probe, tc.batch, tc.threads)
		probe.Close()
		if w != tc.want {
			t.Errorf("ImageNet-shaped batch %d on %d threads: %d workers, want %d", tc.batch, tc.threads, w, tc.want)
		}
	}
}

// TestBatchedDoesNotAllocate checks that steady-state batch-parallel
// Forward and Backward allocate nothing (no shared allocation on the hot
// path).
func TestBatchedDoesNotAllocate(t *testing.T) {
	m := lprFixture(t, "mobilenetv1.onnx", "")
	name, out := m.Graph.Input[0].Name, m.Graph.Output[0].Name
	shape := []int{4, 3, 32, 32}
	b, err := CompileBatched(m, Options{Threads: 2, InputShapes: map[string][]int{name: shape}, Trainable: convWeights(m), KeepForBackward: true}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	in := map[string]*Tensor{name: randTensor(rand.New(rand.NewPCG(1, 2)), shape...)}
	if err := b.Forward(in); err != nil {
		t.Fatal(err)
	}
	dOut := map[string]*Tensor{out: NewTensor(b.Value(out).Shape...)}
	step := func() {
		if err := b.Forward(in); err != nil {
			t.Fatal(err)
		}
		if err := b.Backward(dOut); err != nil {
			t.Fatal(err)
		}
	}
	step()
	if n := testing.AllocsPerRun(5, step); n != 0 {
		t.Errorf("Forward+Backward allocate %v times per step", n)
	}
}
