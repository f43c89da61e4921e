// Command engine measures lprconv's engine against the references that
// users would otherwise run, side by side in one process, and prints the
// ratio of the two:
//
//	go run ./bench/engine infer [-reps 7] [-min 400ms] [-threads 1,2] CASE...
//	go run ./bench/engine train [-reps 7] [-min 1s] [-threads 1,2] [-torch script] MODEL
//	go run ./bench/engine scaling [-reps 21] [-min 150ms] [-threads 2] CASE...
//	go run ./bench/engine peak [-batch 1] MODEL
//	go run ./bench/engine npy -o FILE [-n 4] [-shape 3,224,224]
//
// infer: inference throughput of the engine and of ONNX Runtime (through
// internal/ortrun) on the same model, input and thread count. A CASE is
// MODEL.onnx:BATCH. For every case, each repetition runs every thread count
// in turn and, at each, the two runtimes in alternation (engine, ORT, then
// ORT, engine in the next repetition), -reps times; a run lasts at least
// -min and yields images/s. The medians, the ratio engine/ORT of the
// medians, the median of the per-repetition (back-to-back) ratios, and the
// engine's scaling (median per-repetition ratio of its throughput to that
// at the first thread count, and the same for CPU time per image) are
// printed, with the number of batch slices the engine chose (wrk).
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
// scaling: the engine's throughput at -threads over 1 thread, next to a
// control that no parallel design can beat on the same machine (as many
// independent 1-thread programs as threads, each on its own slice of the
// batch, never synchronizing); all three run in turn in every repetition.
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
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: engine infer|train|scaling|peak|npy ... (see the package comment)")
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
	case "scaling":
		err = scalingMain(os.Args[2:])
	case "npy":
		err = npyMain(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (want infer, train, scaling, peak or npy)", os.Args[1])
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

// runFlags are the flags that infer and train share.
type runFlags struct {
	reps                       *int
	minDur                     *time.Duration
	threadList, label, profile *string
}

// addRunFlags declares the shared flags on fs; each repetition alternates
// between the engine and the reference (what), with the given defaults.
func addRunFlags(fs *flag.FlagSet, what string, minDur time.Duration, threads string) runFlags {
	return runFlags{
		reps:       fs.Int("reps", 7, "alternating repetitions per "+what+" (the median is reported)"),
		minDur:     fs.Duration("min", minDur, "minimum duration of one repetition"),
		threadList: fs.String("threads", threads, "thread counts, comma-separated"),
		label:      fs.String("label", "", "label of the build in the RESULT lines (default: the build tags)"),
		profile:    fs.String("cpuprofile", "", "write a CPU profile of the whole run to `FILE`"),
	}
}

// start parses args, fills in the default label, starts the CPU profile
// when asked and returns the thread counts and the function that stops
// the profile.
func (r runFlags) start(fs *flag.FlagSet, args []string) ([]int, func(), error) {
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	threads, err := parseThreads(*r.threadList)
	if err != nil {
		return nil, nil, err
	}
	if *r.label == "" {
		*r.label = build()
	}
	stop, err := startProfile(*r.profile)
	if err != nil {
		return nil, nil, err
	}
	return threads, stop, nil
}
