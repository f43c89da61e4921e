package engine

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// benchModel runs Forward on m at the given input shape, reporting
// images per second and allocations.
func benchModel(b *testing.B, m *onnxpb.ModelProto, shape []int) {
	benchModelThreads(b, m, shape, 0)
}

// benchModelThreads is benchModel on the given number of threads (0: the
// default).
func benchModelThreads(b *testing.B, m *onnxpb.ModelProto, shape []int, threads int) {
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
	p, err := Compile(m, Options{Threads: threads, InputShapes: map[string][]int{name: shape}})
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
	cpu0 := cpuTime()
	for b.Loop() {
		if err := p.Forward(in); err != nil {
			b.Fatal(err)
		}
	}
	// CPU time per run is less sensitive than wall time to other processes
	// competing for the cores.
	b.ReportMetric(float64(cpuTime()-cpu0)/1e6/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(b.N*shape[0])/b.Elapsed().Seconds(), "images/s")
	b.ReportMetric(float64(p.PeakActivationBytes())/(1<<20), "peak-MiB")
}

// cpuTime returns the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
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
		testutil.Skipf(b, "fixture absent: %v", err)
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

// threadCPU returns the CPU time of the calling OS thread in nanoseconds.
func threadCPU() int64 {
	var ts syscall.Timespec
	const clockThreadCPUTimeID = 3
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}

// TestProfileModels profiles every fixture model (or the model of
// ENGINE_PROFILE=<model path>[:batch]) with ProfileSteps and checks the
// profile: one entry per compiled step, in execution order and naming the
// step's node, no negative time, and the step times of all runs adding up
// to no more than the measured duration of the profiling call, which also
// runs every step; FormatProfile's total is their sum. With ENGINE_PROFILE
// set it also logs per-operator single-thread CPU times (a tuning tool;
// ENGINE_PROFILE_TOP sets how many steps to list): each step's fastest of
// 20 runs of thread CPU time, which does not count time lost to other
// processes.
func TestProfileModels(t *testing.T) {
	batch := 4
	var paths []string
	spec := os.Getenv("ENGINE_PROFILE")
	if spec != "" {
		batch = 64
		if i := strings.LastIndex(spec, ":"); i > 0 {
			v, err := strconv.Atoi(spec[i+1:])
			if err != nil {
				t.Fatalf("ENGINE_PROFILE batch %q: %v", spec[i+1:], err)
			}
			batch, spec = v, spec[:i]
		}
		paths = []string{spec}
	} else if paths = testutil.Fixtures(t); len(paths) == 0 {
		testutil.Skip(t, "no fixture models in testdata/models")
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			m, err := onnxio.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			var shape []int
			for i, d := range m.Graph.Input[0].GetType().GetTensorType().GetShape().GetDim() {
				v := int(d.GetDimValue())
				if i == 0 && v <= 0 { // a dynamic batch dim
					v = batch
				}
				shape = append(shape, v)
			}
			name := m.Graph.Input[0].Name
			p := mustCompile(t, m, Options{Threads: 1, InputShapes: map[string][]int{name: shape}})
			in := map[string]*Tensor{name: randTensor(rand.New(rand.NewPCG(1, 1)), shape...)}
			const runs = 3
			t0 := time.Now()
			times, err := p.ProfileSteps(in, runs)
			elapsed := time.Since(t0)
			if err != nil {
				t.Fatal(err)
			}
			steps := p.Steps()
			if len(times) != len(steps) || len(steps) == 0 {
				t.Fatalf("%d profile entries for %d steps", len(times), len(steps))
			}
			var sum time.Duration
			for i, st := range steps {
				tm := times[i]
				if tm.Index != st.Index || tm.OpType != st.Node.OpType || tm.Name != st.Node.Name {
					t.Errorf("entry %d is node %d (%s %q), step %d is node %d (%s %q)", i, tm.Index, tm.OpType, tm.Name, i, st.Index, st.Node.OpType, st.Node.Name)
				}
				if tm.Time < 0 {
					t.Errorf("step %d (%s): negative time %v", i, tm.OpType, tm.Time)
				}
				sum += tm.Time
			}
			if sum*runs > elapsed {
				t.Errorf("step times add up to %v per run, %v for %d runs, more than the %v the profiling took", sum, sum*runs, runs, elapsed)
			}
			if report := FormatProfile(times, 5); !strings.HasPrefix(report, fmt.Sprintf("total %v\n", sum)) {
				t.Errorf("FormatProfile does not start with the total %v:\n%s", sum, report)
			}
			if os.Getenv("ENGINE_PROFILE") != "" {
				logThreadCPUProfile(t, p)
			}
		})
	}
}

// logThreadCPUProfile logs the per-operator single-thread CPU times of the
// program's steps (after a Forward has loaded its inputs), each the
// fastest of 20 runs.
func logThreadCPUProfile(t *testing.T, p *Program) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	times := make([]StepTime, len(p.steps))
	// the fastest of several runs of each step: on a shared machine the
	// minimum is the most repeatable estimate
	const runs = 20
	for r := 0; r < runs; r++ {
		for i, st := range p.steps {
			t0 := threadCPU()
			if err := st.Op.Forward(p.ctx, st.In, st.Out); err != nil {
				t.Fatal(err)
			}
			if d := time.Duration(threadCPU() - t0); r == 0 || d < times[i].Time {
				times[i].Time = d
			}
		}
	}
	for i, st := range p.steps {
		op := st.Node.OpType
		if c, ok := st.Op.(*ConvOp); ok {
			switch {
			case c.Kind == convDepthwise:
				op = "Conv/depthwise"
			case c.Kind == convPointwise:
				op = "Conv/pointwise"
			default:
				op = "Conv/general"
			}
		}
		times[i] = StepTime{Index: st.Index, OpType: op, Name: st.Node.Name, Shape: st.Out[0].Shape, Time: times[i].Time}
	}
	top := 12
	if v, err := strconv.Atoi(os.Getenv("ENGINE_PROFILE_TOP")); err == nil {
		top = v
	}
	t.Log("\n" + FormatProfile(times, top))
}
