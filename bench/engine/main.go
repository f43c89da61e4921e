// Command engine measures lprconv's engine against the references that
// users would otherwise run, side by side in one process, and prints the
// ratio of the two:
//
//	go run ./bench/engine infer [-reps 7] [-min 400ms] [-threads 1,2] CASE...
//	go run ./bench/engine train [-reps 7] [-min 1s] [-threads 1,2] [-torch script] MODEL
//	go run ./bench/engine peak [-batch 1] MODEL
//	go run ./bench/engine npy -o FILE [-n 4] [-shape 3,224,224]
//
// infer: inference throughput of the engine and of ONNX Runtime (through
// internal/ortrun) on the same model, input and thread count. A CASE is
// MODEL.onnx:BATCH. For every case and thread count the two runtimes run
// in alternation (engine, ORT, engine, ORT, ...), -reps times each; a
// repetition runs the model for at least -min and yields images/s. The
// medians, the ratio engine/ORT of the medians and the median of the
// per-repetition (back-to-back) ratios are printed.
//
// train: one training step (forward, loss gradient, backward, SGD update of
// every float initializer) at batch 64 in the engine and in PyTorch. The
// PyTorch side is a worker process (torch_train.py, run by /usr/bin/python3)
// that rebuilds the same graph from the ONNX file with the same weights and
// runs steps when asked, so that engine and PyTorch repetitions alternate.
// PyTorch is measured in channels_last and in contiguous (NCHW) memory
// format, and in channels_last with OMP_WAIT_POLICY=PASSIVE (a second
// worker); its best median is the reference of the ratio.
//
// peak: the engine's planned activation arena for a model at a batch size.
//
// npy: writes a float32 NPY file of uniform random images in [0,1], for
// `lprconv eval --data`.
//
// infer and train take -cpuprofile FILE (a pprof CPU profile of the run).
// The results are lines of a table on stdout; lines starting with
// "RESULT" are meant for scripts (bench/engine/run.sh collects them).
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: engine infer|train|peak|npy ... (see the package comment)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "infer":
		err = inferMain(os.Args[2:])
	case "train":
		err = trainMain(os.Args[2:])
	case "peak":
		err = peakMain(os.Args[2:])
	case "npy":
		err = npyMain(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (want infer, train, peak or npy)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/engine:", err)
		os.Exit(1)
	}
}

// build describes the binary: the kernels are chosen by build tags.
func build() string {
	tags := "default"
	if purego {
		tags = "purego"
	}
	return fmt.Sprintf("%s %s/%s", tags, runtime.GOOS, runtime.GOARCH)
}

// parseThreads parses "1,2".
func parseThreads(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-threads %q: want a comma-separated list of positive integers", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// modelInput returns the model's first graph input that is not an
// initializer, and its shape with dynamic dimensions set to batch.
func modelInput(m *onnxpb.ModelProto, batch int) (string, []int, error) {
	inits := map[string]bool{}
	for _, t := range m.Graph.Initializer {
		inits[t.Name] = true
	}
	for _, in := range m.Graph.Input {
		if inits[in.Name] {
			continue
		}
		var shape []int
		for i, d := range in.GetType().GetTensorType().GetShape().GetDim() {
			v := int(d.GetDimValue())
			if _, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); !ok || i == 0 {
				v = batch
			}
			shape = append(shape, v)
		}
		if len(shape) != 4 {
			return "", nil, fmt.Errorf("input %q has rank %d; want an NCHW image input", in.Name, len(shape))
		}
		return in.Name, shape, nil
	}
	return "", nil, errors.New("the model has no graph input")
}

// randomTensor returns a tensor of standard normal values.
func randomTensor(rng *rand.Rand, shape []int) *engine.Tensor {
	t := engine.NewTensor(shape...)
	for i := range t.F {
		t.F[i] = float32(rng.NormFloat64())
	}
	return t
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startProfile starts a CPU profile into path (nothing when path is empty)
// and returns the function that stops it.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile %s: %w", path, err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// sample is one timed repetition.
type sample struct {
	iters int
	wall  time.Duration
	cpu   time.Duration
}

// timeLoop runs f until at least min has passed and returns the repetition.
func timeLoop(min time.Duration, f func() error) (sample, error) {
	c0, t0 := cpuTime(), time.Now()
	n := 0
	for {
		if err := f(); err != nil {
			return sample{}, err
		}
		n++
		if el := time.Since(t0); el >= min {
			return sample{iters: n, wall: el, cpu: cpuTime() - c0}, nil
		}
	}
}

// stats summarizes repetitions of a runner that processes batch images
// per iteration.
type stats struct {
	rates  []float64 // images/s per repetition (wall clock)
	cpuPer []float64 // CPU ms per image per repetition
}

func (s *stats) add(x sample, batch int) {
	s.rates = append(s.rates, float64(x.iters*batch)/x.wall.Seconds())
	s.cpuPer = append(s.cpuPer, 1e3*x.cpu.Seconds()/float64(x.iters*batch))
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// pairedRatio returns the median over repetitions of a[i]/b[i]: a and b
// ran back to back in each repetition, so a change of the machine's load
// between repetitions cancels in each ratio.
func pairedRatio(a, b []float64) float64 {
	r := make([]float64, min(len(a), len(b)))
	for i := range r {
		r[i] = a[i] / b[i]
	}
	return median(r)
}

// spread returns (max-min)/median of v, a crude noise indicator.
func spread(v []float64) float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return (hi - lo) / median(v)
}

// inferMain runs the inference comparison.
func inferMain(args []string) error {
	fs := flag.NewFlagSet("infer", flag.ContinueOnError)
	reps := fs.Int("reps", 7, "alternating repetitions per runtime (the median is reported)")
	minDur := fs.Duration("min", 400*time.Millisecond, "minimum duration of one repetition")
	threadList := fs.String("threads", "1,2", "thread counts, comma-separated")
	label := fs.String("label", "", "label of the build in the RESULT lines (default: the build tags)")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `FILE`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	threads, err := parseThreads(*threadList)
	if err != nil {
		return err
	}
	stop, err := startProfile(*profile)
	if err != nil {
		return err
	}
	defer stop()
	if *reps < 1 {
		return fmt.Errorf("-reps %d: want at least 1", *reps)
	}
	if fs.NArg() == 0 {
		return errors.New("infer: give at least one MODEL.onnx:BATCH case")
	}
	if *label == "" {
		*label = build()
	}
	ver, err := ortrun.Version()
	if err != nil {
		return err
	}
	lib, _ := ortrun.LibraryPath()
	fmt.Printf("# engine (%s) vs ONNX Runtime %s (%s); %d alternating repetitions of >= %v, medians\n",
		build(), ver, lib, *reps, *minDur)
	fmt.Printf("%-28s %5s %3s %12s %12s %7s %10s %10s %8s %8s\n",
		"model", "batch", "thr", "engine img/s", "ORT img/s", "ratio", "eng cpu-ms", "ORT cpu-ms", "eng sprd", "ORT sprd")
	for _, c := range fs.Args() {
		i := strings.LastIndex(c, ":")
		if i < 0 {
			return fmt.Errorf("case %q: want MODEL.onnx:BATCH", c)
		}
		path := c[:i]
		batch, err := strconv.Atoi(c[i+1:])
		if err != nil || batch < 1 {
			return fmt.Errorf("case %q: batch must be a positive integer", c)
		}
		for _, th := range threads {
			if err := inferCase(path, batch, th, *reps, *minDur, *label); err != nil {
				return fmt.Errorf("%s batch %d, %d threads: %w", path, batch, th, err)
			}
		}
	}
	return nil
}

func inferCase(path string, batch, threads, reps int, minDur time.Duration, label string) error {
	m, err := onnxio.Load(path)
	if err != nil {
		return err
	}
	name, shape, err := modelInput(m, batch)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	p, err := engine.Compile(m, engine.Options{Threads: threads, InputShapes: map[string][]int{name: shape}})
	if err != nil {
		return err
	}
	defer p.Close()
	sess, err := ortrun.NewSession(path, ortrun.Options{IntraOpThreads: threads})
	if err != nil {
		return err
	}
	defer sess.Close()
	x := randomTensor(rand.New(rand.NewPCG(uint64(batch), 7)), shape)
	in := map[string]*engine.Tensor{name: x}
	dims := make([]int64, len(shape))
	for i, d := range shape {
		dims[i] = int64(d)
	}
	ortIn := map[string]ortrun.Tensor{name: {Shape: dims, Data: x.F}}
	out := p.OutputNames()[0]

	// warm up both and check that they agree
	if err := p.Forward(in); err != nil {
		return err
	}
	want, err := sess.Run(ortIn, []string{out})
	if err != nil {
		return err
	}
	got := p.Value(out).F
	var diff, ref float64
	for i, v := range want[out].Data {
		diff = max(diff, math.Abs(float64(got[i])-float64(v)))
		ref = max(ref, math.Abs(float64(v)))
	}
	if rel := diff / max(ref, 1e-30); rel > 1e-3 || math.IsNaN(rel) {
		return fmt.Errorf("engine and ONNX Runtime disagree on output %q: max|diff| %.3g, max|ORT| %.3g", out, diff, ref)
	}

	runEngine := func() error { return p.Forward(in) }
	runORT := func() error { _, err := sess.Run(ortIn, []string{out}); return err }
	var eng, ort stats
	for r := 0; r < reps; r++ {
		// alternate which one goes first, so that a slow phase of the
		// machine hits both alike
		order := []func() error{runEngine, runORT}
		dst := []*stats{&eng, &ort}
		if r%2 == 1 {
			order[0], order[1] = order[1], order[0]
			dst[0], dst[1] = dst[1], dst[0]
		}
		for k, f := range order {
			s, err := timeLoop(minDur, f)
			if err != nil {
				return err
			}
			dst[k].add(s, batch)
		}
	}
	me, mo := median(eng.rates), median(ort.rates)
	base := strings.TrimSuffix(filepath.Base(path), ".onnx")
	fmt.Printf("%-28s %5d %3d %12.1f %12.1f %6.2fx %10.3f %10.3f %7.0f%% %7.0f%%\n",
		base, batch, threads, me, mo, me/mo, median(eng.cpuPer), median(ort.cpuPer), 100*spread(eng.rates), 100*spread(ort.rates))
	fmt.Printf("RESULT infer build=%q model=%s batch=%d threads=%d engine=%.2f ort=%.2f ratio=%.3f paired=%.3f cpu_ratio=%.3f peak_bytes=%d\n",
		label, base, batch, threads, me, mo, me/mo, pairedRatio(eng.rates, ort.rates), median(ort.cpuPer)/median(eng.cpuPer), p.PeakActivationBytes())
	return nil
}

// peakMain prints the planned activation arena of a model.
func peakMain(args []string) error {
	fs := flag.NewFlagSet("peak", flag.ContinueOnError)
	batch := fs.Int("batch", 1, "batch size")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("peak: give one MODEL")
	}
	m, err := onnxio.Load(fs.Arg(0))
	if err != nil {
		return err
	}
	name, shape, err := modelInput(m, *batch)
	if err != nil {
		return err
	}
	p, err := engine.Compile(m, engine.Options{Threads: 1, InputShapes: map[string][]int{name: shape}})
	if err != nil {
		return err
	}
	defer p.Close()
	fmt.Printf("RESULT peak model=%s batch=%d peak_bytes=%d peak_mib=%.2f\n",
		strings.TrimSuffix(filepath.Base(fs.Arg(0)), ".onnx"), *batch, p.PeakActivationBytes(), float64(p.PeakActivationBytes())/(1<<20))
	return nil
}

// npyMain writes random images as a float32 NPY file.
func npyMain(args []string) error {
	fs := flag.NewFlagSet("npy", flag.ContinueOnError)
	out := fs.String("o", "", "output `FILE`")
	n := fs.Int("n", 4, "number of images")
	shapeFlag := fs.String("shape", "3,224,224", "image shape C,H,W")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *n < 1 {
		return errors.New("npy: -o FILE and -n >= 1 are required")
	}
	dims := []int{*n}
	size := *n
	for _, f := range strings.Split(*shapeFlag, ",") {
		d, err := strconv.Atoi(f)
		if err != nil || d < 1 {
			return fmt.Errorf("-shape %q: want positive integers C,H,W", *shapeFlag)
		}
		dims = append(dims, d)
		size *= d
	}
	strs := make([]string, len(dims))
	for i, d := range dims {
		strs[i] = strconv.Itoa(d)
	}
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", strings.Join(strs, ", "))
	// magic (6) + version (2) + length (2) + header + '\n', padded to 64
	pad := 64 - (10+len(header)+1)%64
	header += strings.Repeat(" ", pad%64) + "\n"
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	w.WriteString("\x93NUMPY\x01\x00")
	binary.Write(w, binary.LittleEndian, uint16(len(header)))
	w.WriteString(header)
	rng := rand.New(rand.NewPCG(3, 4))
	var b [4]byte
	for i := 0; i < size; i++ {
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(rng.Float32()))
		w.Write(b[:])
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", *out, err)
	}
	return f.Close()
}

// trainMain runs the training-step comparison.
func trainMain(args []string) error {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	reps := fs.Int("reps", 7, "alternating repetitions per runner (the median is reported)")
	minDur := fs.Duration("min", time.Second, "minimum duration of one repetition")
	threadList := fs.String("threads", "2,1", "thread counts, comma-separated")
	batch := fs.Int("batch", 64, "batch size")
	lr := fs.Float64("lr", 1e-3, "SGD learning rate")
	script := fs.String("torch", "bench/engine/torch_train.py", "PyTorch worker script (empty: engine only)")
	python := fs.String("python", "/usr/bin/python3", "Python interpreter with torch and onnx")
	label := fs.String("label", "", "label of the build in the RESULT lines (default: the build tags)")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `FILE`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	threads, err := parseThreads(*threadList)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("train: give one MODEL")
	}
	stop, err := startProfile(*profile)
	if err != nil {
		return err
	}
	defer stop()
	if *label == "" {
		*label = build()
	}
	path := fs.Arg(0)
	var workers []*torchWorker
	if *script != "" {
		// the same model in two processes: OpenMP's default wait policy
		// (spinning) and OMP_WAIT_POLICY=PASSIVE, which fares better when
		// the cores are shared
		for _, env := range []string{"", "OMP_WAIT_POLICY=PASSIVE"} {
			w, err := startTorch(*python, *script, path, *batch, *lr, env)
			if err != nil {
				return err
			}
			defer w.close()
			workers = append(workers, w)
		}
		fmt.Printf("# PyTorch %s\n", workers[0].version)
	}
	fmt.Printf("# training step (forward + backward + SGD, all float initializers trainable), batch %d, engine (%s); %d alternating repetitions of >= %v, medians\n",
		*batch, build(), *reps, *minDur)
	fmt.Printf("%-16s %3s %12s %10s %10s %10s %10s %10s %10s %10s %8s %8s\n", "model", "thr", "engine img/s", "torch CL", "torch NCHW", "CL passive",
		"ratio/best", "eng cpu-ms", "best cpu-ms", "cpu ratio", "eng sprd", "best sprd")
	for _, th := range threads {
		if err := trainCase(path, *batch, th, *reps, *minDur, float32(*lr), workers, *label); err != nil {
			return fmt.Errorf("%s, %d threads: %w", path, th, err)
		}
	}
	return nil
}

// trainer holds an engine program compiled for training and its step.
type trainer struct {
	p      *engine.Program
	in     map[string]*engine.Tensor
	out    string
	labels []int
	dOut   *engine.Tensor
	params []string
	lr     float32
	loss   float64
}

func newTrainer(path string, batch, threads int, lr float32) (*trainer, error) {
	m, err := onnxio.Load(path)
	if err != nil {
		return nil, err
	}
	name, shape, err := modelInput(m, batch)
	if err != nil {
		return nil, err
	}
	var trainable []string
	for _, t := range m.Graph.Initializer {
		if t.GetDataType() == int32(onnxpb.TensorProto_FLOAT) {
			trainable = append(trainable, t.Name)
		}
	}
	p, err := engine.Compile(m, engine.Options{Threads: threads, InputShapes: map[string][]int{name: shape},
		Trainable: trainable, KeepForBackward: true})
	if err != nil {
		return nil, err
	}
	out := p.OutputNames()[0]
	os := p.Shape(out)
	if len(os) != 2 || os[0] != batch {
		p.Close()
		return nil, fmt.Errorf("output %q has shape %v; want [batch, classes]", out, os)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	labels := make([]int, batch)
	for i := range labels {
		labels[i] = rng.IntN(os[1])
	}
	return &trainer{p: p, in: map[string]*engine.Tensor{name: randomTensor(rng, shape)}, out: out, labels: labels,
		dOut: engine.NewTensor(os...), params: p.ParamNames(), lr: lr}, nil
}

// step runs forward, the mean softmax cross-entropy gradient, backward and
// a plain SGD update.
func (t *trainer) step() error {
	if err := t.p.Forward(t.in); err != nil {
		return err
	}
	logits := t.p.Value(t.out)
	classes := logits.Shape[1]
	n := len(t.labels)
	loss := 0.0
	for i, y := range t.labels {
		row := logits.F[i*classes : (i+1)*classes]
		g := t.dOut.F[i*classes : (i+1)*classes]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v)
		}
		var sum float64
		for j, v := range row {
			e := math.Exp(float64(v - mx))
			g[j] = float32(e)
			sum += e
		}
		for j := range g {
			g[j] = float32(float64(g[j]) / sum / float64(n))
		}
		loss -= math.Log(float64(g[y])*float64(n) + 1e-30)
		g[y] -= 1 / float32(n)
	}
	t.loss = loss / float64(n)
	if err := t.p.Backward(map[string]*engine.Tensor{t.out: t.dOut}); err != nil {
		return err
	}
	for _, name := range t.params {
		w, g := t.p.Param(name).F, t.p.Grad(name)
		for i := range w {
			w[i] -= t.lr * g[i]
		}
	}
	return nil
}

func trainCase(path string, batch, threads, reps int, minDur time.Duration, lr float32, workers []*torchWorker, label string) error {
	tr, err := newTrainer(path, batch, threads, lr)
	if err != nil {
		return err
	}
	defer tr.p.Close()
	for i := 0; i < 3; i++ { // warm up
		if err := tr.step(); err != nil {
			return err
		}
	}
	loss0 := tr.loss
	// PyTorch configurations: channels_last and contiguous with the
	// default OpenMP wait policy, channels_last with the passive one
	type config struct {
		w      *torchWorker
		format string
		st     stats
	}
	var configs []*config
	if len(workers) == 2 {
		configs = []*config{{w: workers[0], format: "channels_last"}, {w: workers[0], format: "contiguous"}, {w: workers[1], format: "channels_last"}}
	}
	var eng stats
	for r := 0; r < reps; r++ {
		s, err := timeLoop(minDur, tr.step)
		if err != nil {
			return err
		}
		eng.add(s, batch)
		for _, c := range configs {
			s, err := c.w.run(threads, c.format, minDur)
			if err != nil {
				return err
			}
			c.st.add(s, batch)
		}
	}
	base := strings.TrimSuffix(filepath.Base(path), ".onnx")
	me := median(eng.rates)
	if len(configs) == 0 {
		fmt.Printf("%-16s %3d %12.1f %10s %10s %10s %10s %10.3f %10s %10s %7.0f%% %8s\n", base, threads, me, "-", "-", "-", "-", median(eng.cpuPer), "-", "-", 100*spread(eng.rates), "-")
		fmt.Printf("RESULT train build=%q model=%s batch=%d threads=%d engine=%.2f loss0=%.4f loss=%.4f\n", label, base, batch, threads, me, loss0, tr.loss)
		return nil
	}
	bi := 0
	for i, c := range configs {
		if median(c.st.rates) > median(configs[bi].st.rates) {
			bi = i
		}
	}
	b := &configs[bi].st
	best := median(b.rates)
	ec, tc := median(eng.cpuPer), median(b.cpuPer)
	mc, mn, mp := median(configs[0].st.rates), median(configs[1].st.rates), median(configs[2].st.rates)
	fmt.Printf("%-16s %3d %12.1f %10.1f %10.1f %10.1f %9.2fx %10.3f %10.3f %9.2fx %7.0f%% %7.0f%%\n", base, threads, me, mc, mn, mp, me/best,
		ec, tc, tc/ec, 100*spread(eng.rates), 100*spread(b.rates))
	fmt.Printf("RESULT train build=%q model=%s batch=%d threads=%d engine=%.2f torch_cl=%.2f torch_nchw=%.2f torch_cl_passive=%.2f ratio=%.3f paired=%.3f cpu_ratio=%.3f loss0=%.4f loss=%.4f\n",
		label, base, batch, threads, me, mc, mn, mp, me/best, pairedRatio(eng.rates, b.rates), tc/ec, loss0, tr.loss)
	return nil
}

// torchWorker is the PyTorch side of the training comparison: a Python
// process that answers "run THREADS FORMAT SECONDS" with "ITERS SECONDS".
type torchWorker struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  *bufio.Reader
	version string
}

// startTorch starts a worker; env, when not empty, is one more
// NAME=VALUE environment variable for it.
func startTorch(python, script, model string, batch int, lr float64, env string) (*torchWorker, error) {
	cmd := exec.Command(python, script, "--model", model, "--batch", strconv.Itoa(batch), "--lr", strconv.FormatFloat(lr, 'g', -1, 64))
	cmd.Stderr = os.Stderr
	if env != "" {
		cmd.Env = append(os.Environ(), env)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %s: %w", python, script, err)
	}
	w := &torchWorker{cmd: cmd, stdin: stdin, stdout: bufio.NewReader(stdout)}
	line, err := w.stdout.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		w.close()
		return nil, fmt.Errorf("PyTorch worker %s did not start (got %q, %v)", script, line, err)
	}
	w.version = strings.TrimSpace(strings.TrimPrefix(line, "ready "))
	return w, nil
}

func (w *torchWorker) run(threads int, format string, minDur time.Duration) (sample, error) {
	if _, err := fmt.Fprintf(w.stdin, "run %d %s %g\n", threads, format, minDur.Seconds()); err != nil {
		return sample{}, fmt.Errorf("PyTorch worker: %w", err)
	}
	line, err := w.stdout.ReadString('\n')
	if err != nil {
		return sample{}, fmt.Errorf("PyTorch worker: %w", err)
	}
	var iters int
	var secs, cpu float64
	if _, err := fmt.Sscanf(line, "%d %g %g", &iters, &secs, &cpu); err != nil || iters < 1 || secs <= 0 {
		return sample{}, fmt.Errorf("PyTorch worker answered %q", line)
	}
	return sample{iters: iters, wall: time.Duration(secs * 1e9), cpu: time.Duration(cpu * 1e9)}, nil
}

func (w *torchWorker) close() {
	w.stdin.Close()
	w.cmd.Wait()
}
