package pipeline

import (
	"bytes"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	"github.com/lprconv/lprconv/internal/checked"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/ortapi"
)

// Latency configures the measurement of the original and compressed
// models in ONNX Runtime and latency-aware planning (see planLatency).
// Without a Runtime nothing is measured and the result says why
// (Unavailable); everything else runs as without Latency.
type Latency struct {
	// Runtime is the loaded ONNX Runtime (nil: not measured).
	Runtime *ortapi.Runtime
	// Unavailable says why there is no Runtime (e.g. the loader's error).
	Unavailable string
	// Batches are the batch sizes measured (none: 1). A model whose input
	// fixes its batch size is measured at that size only.
	Batches []int64
	// Threads is ONNX Runtime's intra-op thread count (0 means 1).
	Threads int
	// KeepSlower turns latency-aware planning off: every layer the rank
	// rule replaces stays replaced, and only the final model is measured.
	KeepSlower bool
	// Budget is the timed duration spent on measurements, split among
	// them (0 means DefaultLatencyBudget). Every measurement still makes
	// its minimum number of rounds.
	Budget time.Duration

	// timer replaces ONNX Runtime in tests.
	timer pairTimer
}

// DefaultLatencyBudget is the timed duration Latency spends by default:
// half on whole models, 30% on single layers (every measurement still
// makes 3 rounds, which on large models takes longer).
const DefaultLatencyBudget = 4 * time.Second

// Tolerance of the latency decisions: a whole model at most this much
// slower than the original counts as no slower (the noise allowance of
// issue 12's goals).
const latencyTolerance = 0.02

// smallModelMACs: a whole model whose run at a batch size takes at most
// this many MACs (about a millisecond on one core) is timed in 3 fresh
// session sets instead of 1.
const smallModelMACs = 100_000_000

// bigRunMACs: a whole model whose run takes more MACs than this (about a
// second on one core at batch 64 for ImageNet-sized MobileNetV1) is timed
// in 2 rounds after 2 warm-up runs rather than 3 after 1. Its first runs in
// a session are slow (ONNX Runtime allocating and touching its buffers: in
// bench/compress the first two of MobileNetV1 1.0 at batch 64 took 1.05
// and 0.99 s, the third 0.79 s), so the warm-up runs are what make the
// measurement right (after one, pairs of rounds read 0.82, 1.26 and 0.74
// where the model runs at 0.71; after two, 0.68-0.71), and 2 rounds keep
// the time added within 10 s.
const bigRunMACs = 5_000_000_000

// LatencyResult is what was measured in ONNX Runtime. Times are medians in
// milliseconds; ratios are compressed / original, paired round by round,
// with the 95% interval of their median (see ortapi.PairedRatio).
type LatencyResult struct {
	// Measured is false when nothing was measured; Reason says why.
	Measured bool   `json:"measured"`
	Reason   string `json:"reason,omitempty"`
	// Runtime is ONNX Runtime's version, Threads its intra-op threads and
	// Clock what the times measure ("process CPU time" or "wall time").
	Runtime string `json:"runtime,omitempty"`
	Threads int    `json:"threads,omitempty"`
	Clock   string `json:"clock,omitempty"`
	// Batches compares the written model with the original per batch size.
	Batches []BatchLatency `json:"batches,omitempty"`
	// Planned is set when latency-aware planning decided the layers;
	// Layers then holds each timed candidate alone (Conv -> Relu against
	// its LPR module) and the decision.
	Planned bool           `json:"planned"`
	Layers  []LayerLatency `json:"layers,omitempty"`
	// Budget reports a --budget latency=F allocation (nil otherwise).
	Budget *LatencyBudget `json:"budget,omitempty"`
	// Notes are remarks (a fixed batch size, a goal not reached).
	Notes []string `json:"notes,omitempty"`
	// Seconds and CPUSeconds are the wall and process CPU time that
	// measuring and latency-aware planning added to the run.
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
}

// BatchLatency compares two models at one batch size.
type BatchLatency struct {
	Batch        int64   `json:"batch"`
	OriginalMs   float64 `json:"original_ms"`
	CompressedMs float64 `json:"compressed_ms"`
	Ratio        float64 `json:"ratio"`
	RatioLow     float64 `json:"ratio_low"`
	RatioHigh    float64 `json:"ratio_high"`
	// Rounds is the number of paired runs.
	Rounds int `json:"rounds"`
}

// LayerLatency is one candidate timed alone: OriginalMs is the layer
// (Conv -> Relu), CompressedMs its LPR module, at its input shape.
type LayerLatency struct {
	Name    string         `json:"name"`
	Batches []BatchLatency `json:"batches"`
	// Kept is set when planning kept the layer; Reason says why.
	Kept   bool   `json:"kept"`
	Reason string `json:"reason,omitempty"`
}

// String returns the ratio with its interval, e.g. "0.91x [0.88, 0.93]".
func (b BatchLatency) String() string {
	return fmt.Sprintf("%.3fx [%.3f, %.3f]", b.Ratio, b.RatioLow, b.RatioHigh)
}

// pairTiming is a comparison of a candidate model with a base model.
type pairTiming struct {
	Base, Cand time.Duration
	Ratio      ortapi.Ratio
}

// batchLatency converts t into the reported form.
func (t pairTiming) batchLatency(batch int64) BatchLatency {
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return BatchLatency{Batch: batch, OriginalMs: ms(t.Base), CompressedMs: ms(t.Cand),
		Ratio: t.Ratio.Median, RatioLow: t.Ratio.Low, RatioHigh: t.Ratio.High, Rounds: t.Ratio.N}
}

// timing asks a pairTimer for one comparison.
type timing struct {
	// Batch is the batch size; Budget the time to spend; Warmup the
	// untimed runs of each model per session set (negative: none).
	Batch  int64
	Budget time.Duration
	Warmup int
	// MinRounds is the least number of timed rounds per set (0 means 3).
	MinRounds int
	// Sets is the least number of fresh session sets (see
	// ortapi.LatencyOptions.Sessions). Each set stops early once the
	// comparison is clear; Fill adds sets until Budget (wall time) is
	// spent, for a measurement that is reported rather than only decided.
	Sets int
	Fill bool
}

// pairTimer times a candidate model against a base model (serialized
// ONNX).
type pairTimer interface {
	time(base, cand []byte, req timing) (pairTiming, error)
	// describe returns the runtime's version and the clock's name.
	describe() (runtime, clock string)
}

// ortTimer times models in ONNX Runtime, interleaved in one session set.
type ortTimer struct {
	rt        *ortapi.Runtime
	threads   int
	clock     ortapi.Clock
	clockName string
}

// newORTTimer measures process CPU time with one thread (it excludes the
// time the process waits for a CPU on a shared machine) and wall time
// with several (CPU time would add the threads up).
func newORTTimer(rt *ortapi.Runtime, threads int) *ortTimer {
	t := &ortTimer{rt: rt, threads: max(threads, 1), clock: ortapi.WallClock(), clockName: "wall time"}
	if t.threads == 1 {
		if c, err := ortapi.ProcessCPUClock(); err == nil {
			t.clock, t.clockName = c, "process CPU time"
		}
	}
	return t
}

// warmupParallel is how many models warm up at once: both of a pair when
// each runs on one thread and the machine has a core for each (warm-up
// runs are not timed).
func (t *ortTimer) warmupParallel() int {
	if t.threads == 1 && runtime.NumCPU() >= 2 {
		return 2
	}
	return 1
}

func (t *ortTimer) describe() (string, string) {
	return "ONNX Runtime " + t.rt.Version(), t.clockName
}

// maxSets bounds the session sets of a filled measurement.
const maxSets = 8

func (t *ortTimer) time(base, cand []byte, req timing) (pairTiming, error) {
	// Process CPU time counts the Go runtime's threads too: collect the
	// garbage of planning (and return it, so that the scavenger stays idle)
	// now rather than during the timed runs.
	debug.FreeOSMemory()
	rounds := req.MinRounds
	if rounds <= 0 {
		rounds = 3
	}
	start := time.Now()
	var samples [2][]time.Duration
	for set := 0; set < maxSets; set++ {
		tm, err := t.rt.TimeModels([]ortapi.Model{{Bytes: base}, {Bytes: cand}}, ortapi.LatencyOptions{
			Batch: req.Batch, Threads: t.threads, Sessions: 1,
			Timing: ortapi.TimingConfig{Warmup: req.Warmup, MinRounds: rounds, MaxRounds: 2000, Budget: req.Budget, Tolerance: latencyTolerance, Clock: t.clock,
				ConcurrentWarmup: t.warmupParallel()},
		})
		if err != nil {
			return pairTiming{}, err
		}
		samples[0] = append(samples[0], tm.Samples[0]...)
		samples[1] = append(samples[1], tm.Samples[1]...)
		if set+1 >= req.Sets && (!req.Fill || time.Since(start) >= req.Budget) {
			break
		}
	}
	return pairTiming{Base: ortapi.Median(samples[0]), Cand: ortapi.Median(samples[1]), Ratio: ortapi.PairedRatio(samples[1], samples[0])}, nil
}

// latencyRun is the state of one run's measurements.
type latencyRun struct {
	o       *Latency
	timer   pairTimer
	batches []int64
	res     *LatencyResult
	// original is the model being compressed, orig its encoding.
	original *onnxpb.ModelProto
	orig     []byte
	start    time.Time
	cpu0     time.Duration
	cpu      ortapi.Clock
	// measured and whole are the last whole-model comparison planning
	// made and the model it measured, reused when the written model is
	// the same.
	measured []byte
	whole    []BatchLatency
	// folded lists the layers whose diag residual a latency budget's
	// written model is expected to fold (foldedLayers of its base plan).
	folded map[string]bool
	// paused, when set, is when a latency budget's table was done (and
	// cpuPaused the CPU clock then): the work until the final
	// measurement is not counted in the time measuring took.
	paused    time.Time
	cpuPaused time.Duration
}

// pause stops counting the time measuring takes until resume.
func (lr *latencyRun) pause() {
	lr.paused = time.Now()
	if lr.cpu != nil {
		lr.cpuPaused = lr.cpu()
	}
}

// resume counts the time measuring takes again.
func (lr *latencyRun) resume() {
	if lr.paused.IsZero() {
		return
	}
	lr.start = lr.start.Add(time.Since(lr.paused))
	if lr.cpu != nil {
		lr.cpu0 += lr.cpu() - lr.cpuPaused
	}
	lr.paused = time.Time{}
}

// newLatencyRun prepares measuring original; it returns nil (and sets
// r.Latency to say why) when nothing can be measured.
func newLatencyRun(o *Latency, r *Result) *latencyRun {
	if o == nil {
		return nil
	}
	r.Latency = &LatencyResult{}
	timer := o.timer
	if timer == nil {
		if o.Runtime == nil {
			reason := o.Unavailable
			if reason == "" {
				reason = "no ONNX Runtime library"
			}
			r.Latency.Reason = reason
			return nil
		}
		timer = newORTTimer(o.Runtime, o.Threads)
	}
	lr := &latencyRun{o: o, timer: timer, res: r.Latency, original: r.Original, start: time.Now()}
	if c, err := ortapi.ProcessCPUClock(); err == nil {
		lr.cpu, lr.cpu0 = c, c()
	}
	lr.res.Runtime, lr.res.Clock = timer.describe()
	lr.res.Threads = max(o.Threads, 1)
	lr.batches, lr.res.Notes = latencyBatches(r.Original, o.Batches)
	orig, err := onnxio.Encode(r.Original)
	if err != nil {
		lr.fail(fmt.Errorf("encode the original: %w", err))
		return nil
	}
	lr.orig = orig
	return lr
}

// latencyBatches returns the batch sizes to measure m at: asked, in
// order without repeats, or the batch size m's first input fixes.
func latencyBatches(m *onnxpb.ModelProto, asked []int64) ([]int64, []string) {
	var bs []int64
	for _, b := range asked {
		if b >= 1 && !slices.Contains(bs, b) {
			bs = append(bs, b)
		}
	}
	if len(bs) == 0 {
		bs = []int64{1}
	}
	if in := m.GetGraph().GetInput(); len(in) > 0 {
		dims := in[0].GetType().GetTensorType().GetShape().GetDim()
		if len(dims) > 0 && dims[0].GetDimValue() > 0 {
			if fixed := dims[0].GetDimValue(); !slices.Equal(bs, []int64{fixed}) {
				note := fmt.Sprintf("latency measured at batch %d only: the model's input fixes its batch size", fixed)
				return []int64{fixed}, []string{note}
			}
		}
	}
	return bs, nil
}

// fail records that measuring stopped with err.
func (lr *latencyRun) fail(err error) {
	lr.res.Measured, lr.res.Batches, lr.res.Planned, lr.res.Layers = false, nil, false, nil
	lr.res.Reason = oneLineError(err)
	lr.finish()
}

// finish records the time spent so far.
func (lr *latencyRun) finish() {
	lr.res.Seconds = time.Since(lr.start).Seconds()
	if lr.cpu != nil {
		lr.res.CPUSeconds = (lr.cpu() - lr.cpu0).Seconds()
	}
}

// compareWhole times model against the original (of macs MACs per
// image) at every batch size, after a warm-up run, in fresh session sets
// until its share of the budget is spent (see bigRunMACs).
func (lr *latencyRun) compareWhole(model []byte, macs int64) ([]BatchLatency, error) {
	budget := lr.budget() * 5 / 10 / time.Duration(len(lr.batches))
	var out []BatchLatency
	for _, b := range lr.batches {
		// One session's buffer placement can make a small model
		// consistently faster or slower: fresh session sets average it
		// out where runs are cheap.
		sets := 1
		if macs > 0 && checked.SatMul(macs, b) <= smallModelMACs {
			sets = 3
		}
		rounds, warmup := 3, 1
		if checked.SatMul(macs, b) > bigRunMACs {
			rounds, warmup = 2, 2
		}
		t, err := lr.timer.time(lr.orig, model, timing{Batch: b, Budget: budget, Warmup: warmup, MinRounds: rounds, Sets: sets, Fill: true})
		if err != nil {
			return nil, fmt.Errorf("batch %d: %w", b, err)
		}
		out = append(out, t.batchLatency(b))
	}
	lr.measured, lr.whole = model, out
	return out, nil
}

func (lr *latencyRun) budget() time.Duration {
	if lr.o.Budget > 0 {
		return lr.o.Budget
	}
	return DefaultLatencyBudget
}

// measureFinal compares the written model with the original (reusing
// planning's last measurement when it measured the same model). Failures
// are reported in r.Latency, never returned: compress succeeds without a
// latency.
func (lr *latencyRun) measureFinal(r *Result) {
	if lr == nil {
		return
	}
	lr.resume()
	if r.Replaced == 0 && !r.graphRewritten() {
		lr.res.Measured, lr.res.Batches = false, nil
		lr.res.Reason = "no layer is replaced and the graph is not rewritten: the output runs as the original does"
		lr.finish()
		return
	}
	model, err := onnxio.Encode(r.Model)
	if err != nil {
		lr.fail(fmt.Errorf("encode the compressed model: %w", err))
		return
	}
	whole := lr.whole
	if whole == nil || !bytes.Equal(model, lr.measured) {
		if whole, err = lr.compareWhole(model, r.MACsBefore); err != nil {
			lr.fail(err)
			return
		}
	}
	lr.res.Measured, lr.res.Reason, lr.res.Batches = true, "", whole
	for _, b := range whole {
		switch {
		case clearlySlower(b):
			lr.res.Notes = append(lr.res.Notes, fmt.Sprintf("the compressed model is slower than the original at batch %d (%s)", b.Batch, b))
		case b.Ratio > 1+latencyTolerance:
			lr.res.Notes = append(lr.res.Notes, fmt.Sprintf("the measurement at batch %d is too noisy to tell (%s): the machine is busy; a longer measuring time (compress --latency-time) gives more rounds", b.Batch, b))
		}
	}
	lr.finish()
}

// clearlySlower reports whether b's ratio and the low end of its 95%
// interval are both above 1 + latencyTolerance.
func clearlySlower(b BatchLatency) bool {
	return b.Ratio > 1+latencyTolerance && b.RatioLow > 1+latencyTolerance
}

// oneLineError returns err's message with its lines joined.
func oneLineError(err error) string {
	var b []byte
	for _, c := range []byte(err.Error()) {
		if c == '\n' || c == '\r' {
			c = ' '
		}
		b = append(b, c)
	}
	return string(b)
}
