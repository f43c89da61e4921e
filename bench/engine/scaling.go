package main

// The scaling command.

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/onnxio"
)

// scalingMain compares, for one model and batch, the engine at 1 thread,
// the engine at N threads (engine.CompileBatched's choice) and a control
// that no parallel design can beat on the same machine: N independent
// 1-thread programs, each on its own goroutine with its own slice of the
// batch, that never synchronize except at the end of the batch. The three
// run in turn in every repetition, so they see the same load; the scaling
// of each is the median of its per-repetition ratios to 1 thread. On a
// shared machine the control shows how much of a shortfall from N is the
// machine's, and the gap between engine and control what the design
// costs (barriers, reduction, imbalance).
func scalingMain(args []string) error {
	fs := flag.NewFlagSet("scaling", flag.ContinueOnError)
	reps := fs.Int("reps", 21, "repetitions (the median is reported)")
	minDur := fs.Duration("min", 150*time.Millisecond, "minimum duration of one run")
	threads := fs.Int("threads", 2, "threads N")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 || *threads < 2 || *reps < 1 {
		return errors.New("scaling: give -threads N >= 2, -reps >= 1 and at least one MODEL.onnx:BATCH case")
	}
	fmt.Printf("%-24s %5s %3s %12s %12s %7s %4s %12s %7s %9s\n", "model", "batch", "thr", "1-thr img/s", "engine img/s", "scale", "wrk", "ctrl img/s", "scale", "eng/ctrl")
	for _, c := range fs.Args() {
		i := strings.LastIndex(c, ":")
		batch, err := strconv.Atoi(c[i+1:])
		if i < 0 || err != nil || batch < *threads {
			return fmt.Errorf("case %q: want MODEL.onnx:BATCH with BATCH >= -threads", c)
		}
		if err := scalingCase(c[:i], batch, *threads, *reps, *minDur); err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
	}
	return nil
}

func scalingCase(path string, batch, threads, reps int, minDur time.Duration) error {
	m, err := onnxio.Load(path)
	if err != nil {
		return err
	}
	name, shape, err := modelInput(m, batch)
	if err != nil {
		return err
	}
	x := randomTensor(rand.New(rand.NewPCG(uint64(batch), 7)), shape)
	compile := func(th, n int) (*engine.Batched, error) {
		s := append([]int{n}, shape[1:]...)
		return engine.CompileBatched(m, engine.Options{Threads: th, InputShapes: map[string][]int{name: s}}, 0)
	}
	one, err := compile(1, batch)
	if err != nil {
		return err
	}
	defer one.Close()
	par, err := compile(threads, batch)
	if err != nil {
		return err
	}
	defer par.Close()
	// the control: one 1-thread program per slice
	per := len(x.F) / batch
	ctrl := make([]*engine.Batched, threads)
	ins := make([]map[string]*engine.Tensor, threads)
	for k := range ctrl {
		lo, hi := k*batch/threads, (k+1)*batch/threads
		if ctrl[k], err = compile(1, hi-lo); err != nil {
			return err
		}
		defer ctrl[k].Close()
		ins[k] = map[string]*engine.Tensor{name: engine.NewTensorF(x.F[lo*per:hi*per], append([]int{hi - lo}, shape[1:]...)...)}
	}
	in := map[string]*engine.Tensor{name: x}
	var wg sync.WaitGroup
	errs := make([]error, threads)
	runCtrl := func() error {
		wg.Add(threads)
		for k := range ctrl {
			go func() { errs[k] = ctrl[k].Forward(ins[k]); wg.Done() }()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	runs := []func() error{func() error { return one.Forward(in) }, func() error { return par.Forward(in) }, runCtrl}
	st := make([]stats, len(runs))
	for r := 0; r < reps; r++ {
		for i, f := range runs {
			s, err := timeLoop(minDur, f)
			if err != nil {
				return err
			}
			st[i].add(s, batch)
		}
	}
	base := strings.TrimSuffix(filepath.Base(path), ".onnx")
	se, sc := pairedRatio(st[1].rates, st[0].rates), pairedRatio(st[2].rates, st[0].rates)
	fmt.Printf("%-24s %5d %3d %12.1f %12.1f %6.2fx %4d %12.1f %6.2fx %8.2fx\n", base, batch, threads,
		median(st[0].rates), median(st[1].rates), se, par.Workers(), median(st[2].rates), sc, pairedRatio(st[1].rates, st[2].rates))
	fmt.Printf("RESULT scaling model=%s batch=%d threads=%d one=%.2f engine=%.2f scale=%.3f workers=%d control=%.2f control_scale=%.3f engine_over_control=%.3f\n",
		base, batch, threads, median(st[0].rates), median(st[1].rates), se, par.Workers(), median(st[2].rates), sc, pairedRatio(st[1].rates, st[2].rates))
	return nil
}
