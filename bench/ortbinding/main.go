// Command ortbinding measures the cost of the two ways lprconv can call
// ONNX Runtime from Go: the cgo binding github.com/yalue/onnxruntime_go
// and package ortapi (the C API over purego, no cgo). It prints
//
//   - the cost of one trivial foreign call (GetVersionString through each
//     binding) and of one run of a tiny model (ONNX's test_relu) with
//     prebuilt inputs, in ns per call, as the mean over -calls calls
//     repeated -reps times (median of the repetitions);
//
//   - the end-to-end latency of every model matched by -models at each
//     batch size (one intra-op thread, all graph optimizations): both
//     bindings' runs interleaved (ortapi.Interleave), with inputs copied
//     in and outputs copied out on every run, as medians and the paired
//     ratio purego/cgo with its 95% interval.
//
//     go run ./bench/ortbinding [-models 'testdata/models/*.onnx'] [-batches 1,64] [-rounds 200]
//
// The library is found as ortapi.Find does ($ONNXRUNTIME_LIB, then the
// cache that .ci/run fills).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
	ort "github.com/yalue/onnxruntime_go"

	"github.com/lprconv/lprconv/ortapi"
)

func main() {
	models := flag.String("models", "testdata/models/*.onnx", "glob of models to time")
	batches := flag.String("batches", "1,64", "batch sizes")
	rounds := flag.Int("rounds", 200, "most interleaved rounds per model and batch")
	calls := flag.Int("calls", 200000, "calls per repetition of the per-call measurements")
	relu := flag.String("tiny", "/usr/share/libonnx-testdata/data/node/test_relu/model.onnx", "tiny model for the per-run overhead")
	flag.Parse()
	if err := run(*models, *batches, *rounds, *calls, *relu); err != nil {
		fmt.Fprintln(os.Stderr, "ortbinding:", err)
		os.Exit(1)
	}
}

func run(models, batchList string, rounds, calls int, tiny string) error {
	lib, err := ortapi.Find("")
	if err != nil {
		return err
	}
	rt, err := ortapi.Load(lib)
	if err != nil {
		return err
	}
	defer rt.Close()
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("cgo binding: %w", err)
	}
	defer ort.DestroyEnvironment()
	fmt.Printf("ONNX Runtime %s (%s), %s\n\n", rt.Version(), lib, time.Now().UTC().Format(time.RFC3339))

	// Per-call overhead.
	fmt.Println("per call (median of 7 repetitions):")
	getVersion, err := versionFunc(lib)
	if err != nil {
		return err
	}
	fmt.Printf("  GetVersion (one C call + string copy)  cgo %7.0f ns   purego %7.0f ns\n",
		perCall(calls, func() { _ = ort.GetVersion() }),
		perCall(calls, func() { _ = cString(purego.SyscallN(getVersion)) }))
	cgoTiny, err := newCgo(tiny, 0)
	if err != nil {
		return err
	}
	pgTiny, err := newPurego(rt, tiny, 0)
	if err != nil {
		return err
	}
	n := calls / 20
	fmt.Printf("  test_relu run, inputs prebuilt   cgo %7.0f ns   purego %7.0f ns\n",
		perCall(n, must(cgoTiny.runBound)), perCall(n, must(pgTiny.runBound)))
	fmt.Printf("  test_relu run, copy in and out   cgo %7.0f ns   purego %7.0f ns\n\n",
		perCall(n, must(cgoTiny.runCopy)), perCall(n, must(pgTiny.runCopy)))
	cgoTiny.close()
	pgTiny.close()

	// End to end.
	paths, err := filepath.Glob(models)
	if err != nil {
		return err
	}
	var bs []int
	for _, f := range strings.Split(batchList, ",") {
		b, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || b <= 0 {
			return fmt.Errorf("-batches: bad batch size %q", f)
		}
		bs = append(bs, b)
	}
	fmt.Println("end to end, 1 intra-op thread, wall clock, interleaved rounds:")
	fmt.Printf("  %-28s %5s %6s %12s %12s %22s\n", "model", "batch", "rounds", "cgo median", "purego med.", "purego/cgo [95% CI]")
	for _, p := range paths {
		for _, b := range bs {
			c, err := newCgo(p, b)
			if err != nil {
				return err
			}
			g, err := newPurego(rt, p, b)
			if err != nil {
				return err
			}
			tm, err := ortapi.Interleave(ortapi.TimingConfig{Warmup: 5, MinRounds: 30, MaxRounds: rounds, Tolerance: 0.005}, c.runCopy, g.runCopy)
			c.close()
			g.close()
			if err != nil {
				return fmt.Errorf("%s batch %d: %w", p, b, err)
			}
			r := tm.Ratio(1, 0)
			fmt.Printf("  %-28s %5d %6d %12s %12s %8.3f [%.3f, %.3f]\n", filepath.Base(p), b, tm.Rounds(),
				tm.Median(0).Round(time.Microsecond), tm.Median(1).Round(time.Microsecond), r.Median, r.Low, r.High)
		}
	}
	return nil
}

func must(f func() error) func() {
	return func() {
		if err := f(); err != nil {
			panic(err)
		}
	}
}

// perCall returns the median over 7 repetitions of the mean time of one
// call of f over n calls, in ns.
func perCall(n int, f func()) float64 {
	var reps []time.Duration
	for r := 0; r < 7; r++ {
		start := time.Now()
		for i := 0; i < n; i++ {
			f()
		}
		reps = append(reps, time.Since(start))
	}
	return float64(ortapi.Median(reps)) / float64(n)
}

// shapeFor returns the input's shape with symbolic dimensions set to batch
// (batch 0 keeps 1).
func shapeFor(dims []int64, batch int) ([]int64, int) {
	shape := make([]int64, len(dims))
	n := 1
	for i, d := range dims {
		if d < 0 {
			d = int64(max(batch, 1))
		}
		shape[i] = d
		n *= int(d)
	}
	return shape, n
}

func data(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(i%17)/8 - 1
	}
	return x
}

// cgoRunner is one model in the cgo binding.
type cgoRunner struct {
	sess   *ort.DynamicAdvancedSession
	shapes []ort.Shape
	data   [][]float32
	bound  []ort.Value
	nOut   int
}

func newCgo(path string, batch int) (*cgoRunner, error) {
	ins, outs, err := ort.GetInputOutputInfo(path)
	if err != nil {
		return nil, err
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	if err := so.SetIntraOpNumThreads(1); err != nil {
		return nil, err
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, err
	}
	var inNames, outNames []string
	r := &cgoRunner{nOut: len(outs)}
	for _, in := range ins {
		inNames = append(inNames, in.Name)
		shape, n := shapeFor(in.Dimensions, batch)
		r.shapes = append(r.shapes, ort.NewShape(shape...))
		r.data = append(r.data, data(n))
		v, err := ort.NewTensor(ort.NewShape(shape...), data(n))
		if err != nil {
			return nil, err
		}
		r.bound = append(r.bound, v)
	}
	for _, o := range outs {
		outNames = append(outNames, o.Name)
	}
	r.sess, err = ort.NewDynamicAdvancedSession(path, inNames, outNames, so)
	return r, err
}

// runBound runs on the prebuilt inputs and destroys the outputs.
func (r *cgoRunner) runBound() error {
	outs := make([]ort.Value, r.nOut)
	err := r.sess.Run(r.bound, outs)
	for _, v := range outs {
		if v != nil {
			v.Destroy()
		}
	}
	return err
}

// runCopy builds the inputs from Go slices, runs, and copies the outputs
// to Go slices, as ortapi.Session.Run does.
func (r *cgoRunner) runCopy() error {
	ins := make([]ort.Value, len(r.shapes))
	for i := range ins {
		v, err := ort.NewTensor(r.shapes[i], append([]float32(nil), r.data[i]...))
		if err != nil {
			return err
		}
		ins[i] = v
	}
	outs := make([]ort.Value, r.nOut)
	err := r.sess.Run(ins, outs)
	for _, v := range ins {
		v.Destroy()
	}
	for _, v := range outs {
		if t, ok := v.(*ort.Tensor[float32]); ok {
			_ = append([]float32(nil), t.GetData()...)
		}
		if v != nil {
			v.Destroy()
		}
	}
	return err
}

func (r *cgoRunner) close() {
	for _, v := range r.bound {
		v.Destroy()
	}
	r.sess.Destroy()
}

// puregoRunner is one model in package ortapi.
type puregoRunner struct {
	sess   *ortapi.Session
	inputs map[string]ortapi.Tensor
	bound  *ortapi.Bound
}

func newPurego(rt *ortapi.Runtime, path string, batch int) (*puregoRunner, error) {
	s, err := rt.NewSessionFromFile(path, ortapi.Options{IntraOpThreads: 1})
	if err != nil {
		return nil, err
	}
	r := &puregoRunner{sess: s, inputs: map[string]ortapi.Tensor{}}
	for _, in := range s.Inputs() {
		shape, n := shapeFor(in.Shape, batch)
		r.inputs[in.Name] = ortapi.Tensor{Shape: shape, Data: data(n)}
	}
	r.bound, err = s.Bind(r.inputs)
	return r, err
}

func (r *puregoRunner) runBound() error { return r.bound.Run() }

func (r *puregoRunner) runCopy() error {
	_, err := r.sess.Run(r.inputs, nil)
	return err
}

func (r *puregoRunner) close() {
	r.bound.Close()
	r.sess.Close()
}

// versionFunc returns the address of the library's GetVersionString (the
// second entry of the OrtApiBase that OrtGetApiBase returns), for timing a
// bare purego call.
func versionFunc(lib string) (uintptr, error) {
	h, err := purego.Dlopen(lib, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return 0, err
	}
	sym, err := purego.Dlsym(h, "OrtGetApiBase")
	if err != nil {
		return 0, err
	}
	base, _, _ := purego.SyscallN(sym)
	fns := *(*[2]uintptr)(asPointer(base))
	return fns[1], nil
}

// asPointer reinterprets an address returned by C.
func asPointer(u uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&u)) }

// cString copies the C string returned as the first result of a call.
func cString(p, _, _ uintptr) string {
	n := 0
	for *(*byte)(unsafe.Add(asPointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(asPointer(p)), n))
}
