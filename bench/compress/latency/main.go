// Command latency measures ONNX Runtime latency of LPR-compressed models
// against their originals: for every model, rank ratio and residual kind
// it compresses the model data-free (package convert), then times the
// original and the compressed model interleaved in the same process (one
// intra-op thread, batches 1 and 64) and prints the latency ratio next to
// the MAC ratio.
//
//	go run ./bench/compress/latency [-models 'testdata/models/*.onnx'] [-ratios 0.5,0.25,0.125]
//	    [-residuals none,identity,diag,dw3] [-batches 1,64] [-multiple 0] [-time 2s]
//
// The latency ratio is the median over rounds of t(compressed)/t(original),
// each round running both models back to back in alternating order, so
// that load changes on the machine affect both alike. By default t is the
// process CPU time of the run (-clock cpu), which leaves out the time the
// process waits for a CPU on a shared machine; -clock wall measures
// elapsed time.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

func main() {
	models := flag.String("models", "testdata/models/*.onnx", "glob of models to compress")
	ratios := flag.String("ratios", "0.5,0.25,0.125", "rank ratios")
	residuals := flag.String("residuals", "none,identity,diag,dw3", "residual kinds")
	batches := flag.String("batches", "1,64", "batch sizes")
	multiple := flag.Int("multiple", 0, "round ranks up to a multiple of this")
	exclude := flag.String("exclude", "", "regular expression of layers to keep")
	flag.IntVar(&channelAlign, "channel-align", 0, "keep layers whose channel count is not a multiple of this (lprconv compress defaults to 4)")
	budget := flag.Duration("time", 2*time.Second, "measuring time per model, ratio, residual and batch")
	minRounds := flag.Int("min-rounds", 15, "at least this many rounds")
	perLayer := flag.Bool("per-layer", false, "replace one layer at a time and print each layer's latency change")
	showOpt := flag.Bool("show-optimized", false, "print the node types of ONNX Runtime's optimized graph of each model")
	clock := flag.String("clock", "cpu", "cpu: process CPU time per run (robust on a busy machine); wall: elapsed time")
	flag.Parse()
	showOptimized = *showOpt
	useCPUTime = *clock == "cpu"
	if *perLayer {
		if err := runPerLayer(*models, *ratios, *residuals, *batches, *multiple, *budget, *minRounds); err != nil {
			fmt.Fprintln(os.Stderr, "latency:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*models, *ratios, *residuals, *batches, *multiple, *exclude, *budget, *minRounds); err != nil {
		fmt.Fprintln(os.Stderr, "latency:", err)
		os.Exit(1)
	}
}

// showOptimized and useCPUTime are set from the flags before any work
// starts.
var (
	showOptimized bool
	useCPUTime    bool
	channelAlign  int
)

// parseList parses the non-empty fields of the comma-separated list s.
func parseList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := parse(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// parseSweep expands the model glob and parses the comma-separated rank
// ratios, residual kinds and batch sizes.
func parseSweep(glob, ratioList, residualList, batchList string) (paths []string, ratios []float64, kinds []svd.ResidualKind, batches []int64, err error) {
	paths, err = filepath.Glob(glob)
	if err != nil || len(paths) == 0 {
		return nil, nil, nil, nil, fmt.Errorf("no models match %q", glob)
	}
	if ratios, err = parseList(ratioList, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("-ratios: %w", err)
	}
	if kinds, err = parseList(residualList, svd.ParseResidual); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("-residuals: %w", err)
	}
	if batches, err = parseList(batchList, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("-batches: %w", err)
	}
	return paths, ratios, kinds, batches, nil
}

func run(glob, ratioList, residualList, batchList string, multiple int, exclude string, budget time.Duration, minRounds int) error {
	paths, ratios, kinds, batches, err := parseSweep(glob, ratioList, residualList, batchList)
	if err != nil {
		return err
	}
	var ex []string
	if exclude != "" {
		ex = []string{exclude}
	}
	excl, err := convert.ParseExclude(ex)
	if err != nil {
		return fmt.Errorf("-exclude: %w", err)
	}
	if v, err := ortrun.Version(); err == nil {
		clock := "wall time"
		if _, ok := processCPUTime(); ok && useCPUTime {
			clock = "process CPU time"
		}
		fmt.Printf("ONNX Runtime %s, 1 intra-op thread, all graph optimizations, %s; multiple %d, channel-align %d\n\n", v, clock, multiple, channelAlign)
	} else {
		return err
	}
	tmp, err := os.MkdirTemp("", "lprconv-latency")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "model\tresidual\tratio\treplaced\tMAC ratio\t"
	for _, b := range batches {
		header += fmt.Sprintf("lat b%d\t-MAC\torig ms b%d\t", b, b)
	}
	fmt.Fprintln(tw, header)
	for _, path := range paths {
		m, err := onnxio.Load(path)
		if err != nil {
			return err
		}
		for _, kind := range kinds {
			for _, r := range ratios {
				pol := svd.Policy{Ratio: r, Multiple: multiple}
				p, err := convert.NewPlan(context.Background(), m, pol, kind, convert.PlanOptions{ChannelAlign: channelAlign, Select: convert.Selection{Exclude: excl}})
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				out, err := convert.Apply(m, p)
				if err != nil {
					return fmt.Errorf("compress %s (%s, ratio %g): %w", path, kind, r, err)
				}
				cpath := filepath.Join(tmp, "c.onnx")
				if err := onnxio.Save(cpath, out, onnxio.SaveOptions{}); err != nil {
					return err
				}
				if showOptimized {
					for _, mp := range []string{path, cpath} {
						ops, err := optimizedOps(mp, filepath.Join(tmp, "opt.onnx"))
						if err != nil {
							return err
						}
						fmt.Fprintf(os.Stderr, "%s %s %g %s: %s\n", filepath.Base(path), kind, r, filepath.Base(mp), ops)
					}
				}
				macRatio := float64(p.MACsAfter) / float64(p.MACsBefore)
				line := fmt.Sprintf("%s\t%s\t%g\t%d/%d\t%.3f\t", filepath.Base(path), kind, r, p.Replaced(), len(p.Layers), macRatio)
				for _, b := range batches {
					if fb := fixedBatch(m); fb > 0 && fb != b {
						line += "-\t-\t-\t" // the model's batch size is fixed
						continue
					}
					ratio, origMs, err := measure(path, cpath, m, b, budget, minRounds)
					if err != nil {
						return err
					}
					line += fmt.Sprintf("%.3f\t%+.3f\t%.3f\t", ratio, ratio-macRatio, origMs)
				}
				fmt.Fprintln(tw, line)
				tw.Flush()
			}
		}
	}
	return tw.Flush()
}

// runPerLayer compresses one candidate at a time (first ratio and
// residual) and prints the median latency change per layer in
// microseconds, with the MACs the layer saves.
func runPerLayer(glob, ratioList, residualList, batchList string, multiple int, budget time.Duration, minRounds int) error {
	paths, ratios, kinds, batches, err := parseSweep(glob, ratioList, residualList, batchList)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "lprconv-latency")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "model	layer	C	HxW	rank	MACs saved	"
	for _, b := range batches {
		header += fmt.Sprintf("Δµs b%d	ratio b%d	", b, b)
	}
	fmt.Fprintln(tw, header)
	for _, path := range paths {
		m, err := onnxio.Load(path)
		if err != nil {
			return err
		}
		p, err := convert.NewPlan(context.Background(), m, svd.Policy{Ratio: ratios[0], Multiple: multiple}, kinds[0], convert.PlanOptions{Select: convert.Selection{Force: true}})
		if err != nil {
			return fmt.Errorf("plan %s: %w", path, err)
		}
		for i := range p.Layers {
			one := *p
			one.Layers = append([]convert.LayerPlan(nil), p.Layers...)
			for j := range one.Layers {
				one.Layers[j].Replace = j == i
			}
			out, err := convert.Apply(m, &one)
			if err != nil {
				return fmt.Errorf("compress %s, layer %s only: %w", path, p.Layers[i].Name, err)
			}
			cpath := filepath.Join(tmp, "c.onnx")
			if err := onnxio.Save(cpath, out, onnxio.SaveOptions{}); err != nil {
				return err
			}
			l := p.Layers[i]
			hw := int64(0)
			if l.Pixels > 0 {
				hw = l.Pixels
			}
			line := fmt.Sprintf("%s	%s	%d	%d	%d	%d	", filepath.Base(path), l.Name, l.Channels, hw, l.Rank, l.MACsBefore-l.MACsAfter)
			for _, b := range batches {
				if fb := fixedBatch(m); fb > 0 && fb != b {
					line += "-\t-\t"
					continue
				}
				ratio, origMs, err := measure(path, cpath, m, b, budget, minRounds)
				if err != nil {
					return err
				}
				line += fmt.Sprintf("%+.1f	%.3f	", (ratio-1)*origMs*1000, ratio)
			}
			fmt.Fprintln(tw, line)
			tw.Flush()
		}
	}
	return tw.Flush()
}

// measure returns the median over rounds of t(compressed)/t(original) and
// the original's median latency in milliseconds.
func measure(orig, comp string, m *onnxpb.ModelProto, batch int64, budget time.Duration, minRounds int) (float64, float64, error) {
	in := m.Graph.Input[0]
	shape := []int64{batch}
	for _, d := range in.GetType().GetTensorType().GetShape().GetDim()[1:] {
		shape = append(shape, d.GetDimValue())
	}
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	rng := rand.New(rand.NewSource(1))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	feed := map[string]ortrun.Tensor{in.GetName(): {Shape: shape, Data: x}}
	var ratios, origs []float64
	// Sessions are created afresh several times: one session's buffers can
	// be placed so that it runs consistently faster or slower than another
	// session of the same model, which interleaving alone does not cancel.
	for rep := 0; rep < sessionsPerMeasure; rep++ {
		r, o, err := measureSessions(orig, comp, feed, budget/sessionsPerMeasure, max(1, minRounds/sessionsPerMeasure), rep%2 == 1)
		if err != nil {
			return 0, 0, err
		}
		ratios = append(ratios, r...)
		origs = append(origs, o...)
	}
	return median(ratios), median(origs), nil
}

// fixedBatch returns the model's batch size when its first input fixes
// it (opset 9 exports), or 0 when the batch is dynamic.
func fixedBatch(m *onnxpb.ModelProto) int64 {
	dims := m.Graph.Input[0].GetType().GetTensorType().GetShape().GetDim()
	if len(dims) == 0 {
		return 0
	}
	return dims[0].GetDimValue()
}

// sessionsPerMeasure is how many fresh session pairs one measurement
// uses.
const sessionsPerMeasure = 4

// measureSessions opens both models (the compressed one first when
// swap is set) and returns per-round ratios t(comp)/t(orig) and the
// original's times in milliseconds.
func measureSessions(orig, comp string, feed map[string]ortrun.Tensor, budget time.Duration, minRounds int, swap bool) ([]float64, []float64, error) {
	paths := []string{orig, comp}
	sessions := make([]*ortrun.Session, 2)
	open := []int{0, 1}
	if swap {
		open = []int{1, 0}
	}
	for _, i := range open {
		s, err := ortrun.NewSession(paths[i], ortrun.Options{IntraOpThreads: 1})
		if err != nil {
			return nil, nil, err
		}
		defer s.Close()
		sessions[i] = s
	}
	timeOne := func(s *ortrun.Session) (time.Duration, error) {
		if useCPUTime {
			if start, ok := processCPUTime(); ok {
				_, err := s.Run(feed, nil)
				end, _ := processCPUTime()
				return end - start, err
			}
		}
		start := time.Now()
		_, err := s.Run(feed, nil)
		return time.Since(start), err
	}
	for i := 0; i < 3; i++ { // warm up
		for _, s := range sessions {
			if _, err := timeOne(s); err != nil {
				return nil, nil, err
			}
		}
	}
	var ratios, origs []float64
	deadline := time.Now().Add(budget)
	for round := 0; round < minRounds || time.Now().Before(deadline); round++ {
		var t [2]time.Duration
		order := []int{0, 1}
		if round%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			d, err := timeOne(sessions[i])
			if err != nil {
				return nil, nil, err
			}
			t[i] = d
		}
		ratios = append(ratios, float64(t[1])/float64(t[0]))
		origs = append(origs, float64(t[0])/1e6)
		if round > 100000 {
			break
		}
	}
	return ratios, origs, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
