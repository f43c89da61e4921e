package main

// The train command: engine training steps against PyTorch.

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"time"

	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// trainMain runs the training-step comparison.
func trainMain(args []string) error {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	rf := addRunFlags(fs, "runner", time.Second, "2,1")
	batch := fs.Int("batch", 64, "batch size")
	lr := fs.Float64("lr", 1e-3, "SGD learning rate")
	script := fs.String("torch", "bench/engine/torch_train.py", "PyTorch worker script (empty: engine only)")
	python := fs.String("python", "/usr/bin/python3", "Python interpreter with torch and onnx")
	threads, stop, err := rf.start(fs, args)
	if err != nil {
		return err
	}
	defer stop()
	reps, minDur, label := rf.reps, rf.minDur, rf.label
	if fs.NArg() != 1 {
		return errors.New("train: give one MODEL")
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
	p      *engine.Batched
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
	p, err := engine.CompileBatched(m, engine.Options{Threads: threads, InputShapes: map[string][]int{name: shape},
		Trainable: trainable, KeepForBackward: true}, 0)
	if err != nil {
		return nil, err
	}
	out := p.OutputNames()[0]
	var os []int
	if v := p.Value(out); v != nil {
		os = v.Shape
	}
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
		fmt.Printf("RESULT train build=%q model=%s batch=%d threads=%d engine=%.2f loss0=%.4f loss=%.4f workers=%d\n", label, base, batch, threads, me, loss0, tr.loss, tr.p.Workers())
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
	fmt.Printf("RESULT train build=%q model=%s batch=%d threads=%d engine=%.2f torch_cl=%.2f torch_nchw=%.2f torch_cl_passive=%.2f ratio=%.3f paired=%.3f cpu_ratio=%.3f loss0=%.4f loss=%.4f workers=%d\n",
		label, base, batch, threads, me, mc, mn, mp, me/best, pairedRatio(eng.rates, b.rates), tc/ec, loss0, tr.loss, tr.p.Workers())
	return nil
}
