// Command ortlatency times ONNX models against a reference in ONNX Runtime
// through package ortapi (no cgo): for each pair ORIG CANDIDATE... it loads
// every model, binds one seeded input per batch size, and runs them
// interleaved (ortapi.Interleave: warm-up, rotating rounds, early stop when
// the gap is clear) on one intra-op thread with all graph optimizations,
// in -sessions fresh sets of sessions (one session's buffer placement can
// make it consistently faster or slower than another of the same model).
// It prints each model's median time and its paired ratio to the first
// model with a 95% interval, and, with -optimized, the node types of the
// graph ONNX Runtime runs after its fusions.
//
//	go run ./bench/compress/ortlatency [-batches 1,64] [-clock cpu|wall] [-time 4s]
//	    [-sessions 3] [-warmup 5] [-min-rounds 15] [-optimized] [-diag-mul] ORIG CANDIDATE [CANDIDATE...]
//	go run ./bench/compress/ortlatency -isolated [flags] MODEL
//
// -isolated times each LPR candidate layer of MODEL alone against its LPR
// module alone (see runIsolated), a cheap per-layer estimate.
//
// -diag-mul adds, for every candidate, a variant whose diag residuals (the
// group-C 1x1 Conv nodes named .../lpr_res) are written as Mul by a
// [1,C,1,1] scale instead, to compare the two ONNX forms of the module.
// The library is found as ortapi.Find does (--ort-lib, $ONNXRUNTIME_LIB,
// the .ci/run cache).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/ortapi"
)

func main() {
	lib := flag.String("ort-lib", "", "ONNX Runtime library (default: $ONNXRUNTIME_LIB, then the .ci/run cache)")
	batches := flag.String("batches", "1,64", "batch sizes")
	clock := flag.String("clock", "cpu", "cpu: process CPU time per run (robust on a busy machine); wall: elapsed time")
	budget := flag.Duration("time", 4*time.Second, "measuring time per model set and batch")
	sessions := flag.Int("sessions", 3, "fresh session sets per measurement")
	optimized := flag.Bool("optimized", false, "print the node types of ONNX Runtime's optimized graph of each model")
	diagMul := flag.Bool("diag-mul", false, "also time each candidate with its diag residuals written as Mul")
	flag.IntVar(&warmup, "warmup", 5, "untimed runs of each model per session set")
	flag.IntVar(&minRounds, "min-rounds", 15, "timed rounds per session set at least")
	profile := flag.Int("profile", 0, "instead of timing, run each model this many times per batch size with ONNX Runtime's profiler and print the node time by operator type")
	topNodes := flag.Int("profile-nodes", 0, "with -profile, also list this many nodes that took the most time")
	isolated := flag.Bool("isolated", false, "time each candidate layer of the one MODEL alone against its LPR module alone")
	flag.Parse()
	if *isolated {
		if flag.NArg() != 1 {
			fmt.Fprintln(os.Stderr, "usage: ortlatency -isolated [flags] MODEL")
			os.Exit(2)
		}
		if err := isolatedMain(*lib, *batches, *clock, *budget, *sessions, flag.Arg(0)); err != nil {
			fmt.Fprintln(os.Stderr, "ortlatency:", err)
			os.Exit(1)
		}
		return
	}
	if flag.NArg() < 2 {
		fmt.Fprintln(os.Stderr, "usage: ortlatency [flags] ORIG CANDIDATE [CANDIDATE...]")
		os.Exit(2)
	}
	if err := run(*lib, *batches, *clock, *budget, *sessions, *optimized, *diagMul, *profile, *topNodes, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "ortlatency:", err)
		os.Exit(1)
	}
}

// warmup and minRounds are set from the flags before any work starts.
var warmup, minRounds int

// setup loads the runtime and parses the batch sizes and the clock.
func setup(lib, batchList, clockName string) (*ortapi.Runtime, []int64, ortapi.Clock, error) {
	var bs []int64
	for _, f := range strings.Split(batchList, ",") {
		b, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || b <= 0 {
			return nil, nil, nil, fmt.Errorf("-batches: bad batch size %q", f)
		}
		bs = append(bs, b)
	}
	clk := ortapi.WallClock()
	switch clockName {
	case "cpu":
		var err error
		if clk, err = ortapi.ProcessCPUClock(); err != nil {
			return nil, nil, nil, err
		}
	case "wall":
	default:
		return nil, nil, nil, fmt.Errorf("-clock: want cpu or wall, got %q", clockName)
	}
	rt, err := ortapi.Open(lib)
	if err != nil {
		return nil, nil, nil, err
	}
	return rt, bs, clk, nil
}

func isolatedMain(lib, batchList, clockName string, budget time.Duration, sessions int, path string) error {
	rt, bs, clk, err := setup(lib, batchList, clockName)
	if err != nil {
		return err
	}
	defer rt.Close()
	fmt.Printf("ONNX Runtime %s, 1 intra-op thread, all graph optimizations, %s clock, %d session sets, %s\n",
		rt.Version(), clockName, sessions, time.Now().UTC().Format("2006-01-02"))
	return runIsolated(rt, path, bs, ortapi.TimingConfig{Warmup: max(warmup, -1), MinRounds: minRounds, MaxRounds: 100000, Budget: budget, Tolerance: 0.01, Clock: clk}, sessions)
}

func run(lib, batchList, clockName string, budget time.Duration, sessions int, optimized, diagMul bool, profile, topNodes int, paths []string) error {
	rt, bs, clk, err := setup(lib, batchList, clockName)
	if err != nil {
		return err
	}
	defer rt.Close()
	tmp, err := os.MkdirTemp("", "ortlatency")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	names := append([]string(nil), paths...)
	if diagMul {
		for i, p := range paths[1:] {
			mp := filepath.Join(tmp, fmt.Sprintf("mul%d_%s", i, filepath.Base(p)))
			n, err := writeDiagAsMul(p, mp)
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("%s has no diag residual (…/lpr_res group-C 1x1 Conv)", p)
			}
			paths = append(paths, mp)
			names = append(names, filepath.Base(p)+" (diag as Mul)")
		}
	}
	fmt.Printf("ONNX Runtime %s, 1 intra-op thread, all graph optimizations, %s clock, %d session sets, %s\n",
		rt.Version(), clockName, sessions, time.Now().UTC().Format("2006-01-02"))
	if optimized {
		for i, p := range paths {
			ops, err := optimizedOps(rt, p, filepath.Join(tmp, "opt.onnx"))
			if err != nil {
				return err
			}
			fmt.Printf("optimized %s: %s\n", names[i], ops)
		}
	}
	if profile > 0 {
		return profileModels(rt, paths, bs, profile, topNodes, tmp)
	}
	fmt.Printf("%-44s %5s %12s %8s %22s %7s\n", "model", "batch", "median", "rounds", "ratio to first [95%]", "verdict")
	models := make([]ortapi.Model, len(paths))
	for i, p := range paths {
		models[i] = ortapi.Model{Path: p}
	}
	for _, b := range bs {
		all, err := rt.TimeModels(models, ortapi.LatencyOptions{
			Batch: b, Threads: 1, Sessions: sessions,
			Timing: ortapi.TimingConfig{Warmup: max(warmup, -1), MinRounds: minRounds, MaxRounds: 100000, Budget: budget, Tolerance: 0.01, Clock: clk},
		})
		if errors.Is(err, ortapi.ErrFixedBatch) {
			fmt.Printf("%-44s %5d   (the model's batch size is fixed)\n", trim(names[0], 44), b)
			continue
		}
		if err != nil {
			return err
		}
		for i := range paths {
			r := all.Ratio(i, 0)
			verdict := map[int]string{ortapi.Unclear: "unclear", ortapi.Faster: "faster", ortapi.Slower: "slower", ortapi.Same: "same"}[r.Verdict(0.02)]
			if i == 0 {
				verdict = ""
			}
			fmt.Printf("%-44s %5d %12s %8d %8.3f [%.3f, %.3f] %7s\n", trim(names[i], 44), b,
				all.Median(i).Round(100*time.Nanosecond), all.Rounds(), r.Median, r.Low, r.High, verdict)
		}
	}
	return nil
}

func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n+1:]
}

// optimizedOps loads the model with every optimization, has ONNX Runtime
// write the graph it runs to dst, and summarizes its node types
// ("total N: domain:op count, ..."; NCHWc Convs show their fused
// activation and a fused Sum input).
func optimizedOps(rt *ortapi.Runtime, path, dst string) (string, error) {
	s, err := rt.NewSessionFromFile(path, ortapi.Options{IntraOpThreads: 1, OptimizedModelPath: dst})
	if err != nil {
		return "", err
	}
	s.Close()
	m, err := onnxio.Load(dst)
	if err != nil {
		return "", fmt.Errorf("load optimized graph of %s: %w", path, err)
	}
	counts := map[string]int{}
	for _, n := range m.Graph.Node {
		op := n.OpType
		if n.Domain != "" {
			op = strings.TrimPrefix(n.Domain, "com.microsoft.") + ":" + op
		}
		if op == "nchwc:Conv" && len(n.Input) > 3 && n.Input[3] != "" {
			op += "+Sum"
		}
		for _, a := range n.Attribute {
			if a.Name == "activation" {
				op += "+" + string(a.S)
			}
		}
		counts[op]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := []string{fmt.Sprintf("total %d", len(m.Graph.Node))}
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	return strings.Join(parts, ", "), nil
}

// writeDiagAsMul writes to dst the model at src with each diag residual
// Conv (name ending in /lpr_res, group C, weight [C,1,1,1]) replaced by a
// Mul of its input by the weight reshaped to [1,C,1,1]; it returns how
// many it replaced.
func writeDiagAsMul(src, dst string) (int, error) {
	m, err := onnxio.Load(src)
	if err != nil {
		return 0, err
	}
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range m.Graph.Initializer {
		inits[t.Name] = t
	}
	n := 0
	for _, node := range m.Graph.Node {
		if node.OpType != "Conv" || !strings.HasSuffix(node.Name, "/lpr_res") || len(node.Input) != 2 {
			continue
		}
		w := inits[node.Input[1]]
		if w == nil || len(w.Dims) != 4 || w.Dims[1] != 1 || w.Dims[2] != 1 || w.Dims[3] != 1 {
			continue
		}
		w.Dims = []int64{1, w.Dims[0], 1, 1}
		node.OpType, node.Attribute = "Mul", nil
		n++
	}
	return n, onnxio.Save(dst, m, onnxio.SaveOptions{})
}
