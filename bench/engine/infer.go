package main

// The infer, peak and npy commands.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/onnxio"
)

// inferMain runs the inference comparison.
func inferMain(args []string) error {
	fs := flag.NewFlagSet("infer", flag.ContinueOnError)
	rf := addRunFlags(fs, "runtime", 400*time.Millisecond, "1,2")
	threads, stop, err := rf.start(fs, args)
	if err != nil {
		return err
	}
	defer stop()
	reps, minDur, label := rf.reps, rf.minDur, rf.label
	if *reps < 1 {
		return fmt.Errorf("-reps %d: want at least 1", *reps)
	}
	if fs.NArg() == 0 {
		return errors.New("infer: give at least one MODEL.onnx:BATCH case")
	}
	ver, err := ortrun.Version()
	if err != nil {
		return err
	}
	lib, _ := ortrun.LibraryPath()
	fmt.Printf("# engine (%s) vs ONNX Runtime %s (%s); %d alternating repetitions of >= %v, medians\n",
		build(), ver, lib, *reps, *minDur)
	fmt.Printf("%-28s %5s %3s %12s %12s %7s %10s %10s %8s %8s %7s %3s\n",
		"model", "batch", "thr", "engine img/s", "ORT img/s", "ratio", "eng cpu-ms", "ORT cpu-ms", "eng sprd", "ORT sprd", "scale", "wrk")
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
		if err := inferCase(path, batch, threads, *reps, *minDur, *label); err != nil {
			return fmt.Errorf("%s batch %d: %w", path, batch, err)
		}
	}
	return nil
}

// inferRun is the engine and ONNX Runtime at one thread count.
type inferRun struct {
	threads  int
	p        *engine.Batched
	sess     *ortrun.Session
	eng, ort stats
}

// inferCase measures one model and batch at every thread count. The
// thread counts are interleaved within each repetition (and engine and
// ORT alternate within each), so that a slow phase of the machine hits all
// alike; the scaling of the engine is also reported as the median of the
// per-repetition ratios to its first thread count.
func inferCase(path string, batch int, threads []int, reps int, minDur time.Duration, label string) error {
	m, err := onnxio.Load(path)
	if err != nil {
		return err
	}
	name, shape, err := modelInput(m, batch)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	x := randomTensor(rand.New(rand.NewPCG(uint64(batch), 7)), shape)
	in := map[string]*engine.Tensor{name: x}
	dims := make([]int64, len(shape))
	for i, d := range shape {
		dims[i] = int64(d)
	}
	ortIn := map[string]ortrun.Tensor{name: {Shape: dims, Data: x.F}}
	var runs []*inferRun
	defer func() {
		for _, r := range runs {
			r.p.Close()
			if r.sess != nil {
				r.sess.Close()
			}
		}
	}()
	var out string
	for _, th := range threads {
		p, err := engine.CompileBatched(m, engine.Options{Threads: th, InputShapes: map[string][]int{name: shape}}, 0)
		if err != nil {
			return fmt.Errorf("%d threads: %w", th, err)
		}
		r := &inferRun{threads: th, p: p}
		runs = append(runs, r)
		if r.sess, err = ortrun.NewSession(path, ortrun.Options{IntraOpThreads: th}); err != nil {
			return err
		}
		out = p.OutputNames()[0]
		// warm up both and check that they agree
		if err := p.Forward(in); err != nil {
			return err
		}
		want, err := r.sess.Run(ortIn, []string{out})
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
			return fmt.Errorf("%d threads: engine and ONNX Runtime disagree on output %q: max|diff| %.3g, max|ORT| %.3g", th, out, diff, ref)
		}
	}
	for rep := 0; rep < reps; rep++ {
		for _, r := range runs {
			runEngine := func() error { return r.p.Forward(in) }
			runORT := func() error { _, err := r.sess.Run(ortIn, []string{out}); return err }
			// alternate which one goes first
			order := []func() error{runEngine, runORT}
			dst := []*stats{&r.eng, &r.ort}
			if rep%2 == 1 {
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
	}
	base := strings.TrimSuffix(filepath.Base(path), ".onnx")
	for _, r := range runs {
		me, mo := median(r.eng.rates), median(r.ort.rates)
		scale := pairedRatio(r.eng.rates, runs[0].eng.rates)
		fmt.Printf("%-28s %5d %3d %12.1f %12.1f %6.2fx %10.3f %10.3f %7.0f%% %7.0f%% %6.2fx %3d\n",
			base, batch, r.threads, me, mo, me/mo, median(r.eng.cpuPer), median(r.ort.cpuPer), 100*spread(r.eng.rates), 100*spread(r.ort.rates), scale, r.p.Workers())
		fmt.Printf("RESULT infer build=%q model=%s batch=%d threads=%d engine=%.2f ort=%.2f ratio=%.3f paired=%.3f cpu_ratio=%.3f peak_bytes=%d workers=%d scale_paired=%.3f cpu_scale=%.3f\n",
			label, base, batch, r.threads, me, mo, me/mo, pairedRatio(r.eng.rates, r.ort.rates), median(r.ort.cpuPer)/median(r.eng.cpuPer), r.p.PeakActivationBytes(), r.p.Workers(),
			scale, median(runs[0].eng.cpuPer)/median(r.eng.cpuPer))
	}
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
