package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/finetune"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/ortapi"
	"github.com/lprconv/lprconv/svd"
)

// costTimer is a deterministic stand-in for ONNX Runtime: a model's time
// is perNode for every node, plus perWeight for every Conv weight value
// times the batch size, plus, in a whole model (not a one-layer graph),
// perModule for every LPR module's Add. Its ratios have no spread.
type costTimer struct {
	perNode, perWeight, perModule float64
	calls                         int
}

func (c *costTimer) describe() (string, string) { return "cost model", "none" }

func (c *costTimer) cost(b []byte, batch int64) (float64, error) {
	m, err := onnxio.Decode(b)
	if err != nil {
		return 0, err
	}
	size := map[string]int64{}
	for _, t := range m.GetGraph().GetInitializer() {
		n := int64(1)
		for _, d := range t.GetDims() {
			n *= d
		}
		size[t.GetName()] = n
	}
	whole := m.GetGraph().GetName() != "one layer"
	total := 0.0
	for _, n := range m.GetGraph().GetNode() {
		total += c.perNode
		if n.GetOpType() == "Conv" && len(n.GetInput()) > 1 {
			total += c.perWeight * float64(size[n.GetInput()[1]]*batch)
		}
		if whole && n.GetOpType() == "Add" {
			total += c.perModule
		}
	}
	return total, nil
}

func (c *costTimer) time(base, cand []byte, req timing) (pairTiming, error) {
	c.calls++
	batch := req.Batch
	b, err := c.cost(base, batch)
	if err != nil {
		return pairTiming{}, err
	}
	k, err := c.cost(cand, batch)
	if err != nil {
		return pairTiming{}, err
	}
	r := k / b
	return pairTiming{Base: time.Duration(b), Cand: time.Duration(k), Ratio: ortapi.Ratio{Median: r, Low: r, High: r, N: 10}}, nil
}

// runLatency compresses the MobileNetV1 fixture (ratio 1/4, multiple 16)
// with lat and returns the result and the written model's bytes.
func runLatency(t *testing.T, lat *Latency) (*Result, []byte) {
	t.Helper()
	path, _ := fixture(t)
	out := filepath.Join(t.TempDir(), "out.onnx")
	r, err := Run(context.Background(), Options{In: path, Out: out, Rule: svd.Policy{Ratio: 0.25, Multiple: 16}, Residual: svd.KindDiag,
		Plan: convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4}, Tool: "test", Latency: lat})
	if err != nil {
		t.Fatal(err)
	}
	b, err := readFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return r, b
}

func readFile(p string) ([]byte, error) {
	m, err := onnxio.Load(p)
	if err != nil {
		return nil, err
	}
	return onnxio.Encode(m)
}

// TestLatencyPlanDecisions: with a cost model standing in for ONNX
// Runtime, a layer is kept exactly when its module alone costs at least
// as much as the layer alone at some measured batch size, the kept
// layers appear in the plan with the measured reason, and the others are
// written as without latency-aware planning.
func TestLatencyPlanDecisions(t *testing.T) {
	_, base := runLatency(t, nil)
	baseRes, _ := runLatency(t, nil)
	for _, tc := range []struct {
		name                 string
		perNode, perWeight   float64
		wantKeptAll, wantAny bool
	}{
		{"modules pay", 0, 1, false, false},
		{"node overhead dominates", 1e9, 1, true, true},
		{"small layers slower at batch 1", 6000, 1, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			timer := &costTimer{perNode: tc.perNode, perWeight: tc.perWeight}
			r, got := runLatency(t, &Latency{Batches: []int64{1, 64}, timer: timer})
			if r.Latency == nil || !r.Latency.Planned {
				t.Fatalf("latency = %+v, want planned", r.Latency)
			}
			kept := map[string]string{}
			for _, l := range r.Latency.Layers {
				// Recompute the decision from the cost model.
				slower := false
				for _, b := range l.Batches {
					slower = slower || b.CompressedMs >= b.OriginalMs
				}
				if l.Kept != slower {
					t.Errorf("%s: kept = %v, module slower at some batch = %v (%+v)", l.Name, l.Kept, slower, l.Batches)
				}
				if l.Kept {
					kept[l.Name] = l.Reason
					if !strings.HasPrefix(l.Reason, "slower in ONNX Runtime: ") {
						t.Errorf("%s: reason %q", l.Name, l.Reason)
					}
				}
			}
			if len(r.Latency.Layers) != baseRes.Replaced {
				t.Errorf("timed %d layers, want the %d the rule replaces", len(r.Latency.Layers), baseRes.Replaced)
			}
			if tc.wantKeptAll && len(kept) != baseRes.Replaced {
				t.Errorf("kept %d of %d", len(kept), baseRes.Replaced)
			}
			if (len(kept) > 0) != tc.wantAny {
				t.Errorf("kept %v, want some: %v", kept, tc.wantAny)
			}
			if tc.wantAny && !tc.wantKeptAll && len(kept) == baseRes.Replaced {
				t.Errorf("kept every layer; want only the small ones")
			}
			for _, l := range r.Layers {
				why, ok := kept[l.Name]
				if ok && (l.Replace || l.Reason != why) {
					t.Errorf("%s: plan says replace %v, reason %q; want kept with %q", l.Name, l.Replace, l.Reason, why)
				}
			}
			if r.Replaced != baseRes.Replaced-len(kept) {
				t.Errorf("replaced %d, want %d - %d", r.Replaced, baseRes.Replaced, len(kept))
			}
			if len(kept) == 0 && !bytes.Equal(got, base) {
				t.Errorf("no layer kept, but the output differs from the one without latency")
			}
			if r.Replaced > 0 {
				if !r.Latency.Measured || len(r.Latency.Batches) != 2 {
					t.Errorf("final measurement %+v", r.Latency)
				}
			}
		})
	}
}

// TestLatencyPlanWholeModel: when every module pays alone but the whole
// model is slower (the cost model charges each module's Add in context),
// planning keeps the layers with the least gain, one at a time, until the
// whole model is within the tolerance.
func TestLatencyPlanWholeModel(t *testing.T) {
	// Each module's Add costs about what 12k weights do: at batch 1 the
	// seven modules cost more than they save, and the C = 64 layer alone
	// costs more in context than it saves.
	timer := &costTimer{perNode: 0, perWeight: 1, perModule: 12000}
	r, _ := runLatency(t, &Latency{Batches: []int64{1, 64}, timer: timer})
	l := r.Latency
	if !l.Measured || !l.Planned {
		t.Fatalf("latency %+v", l)
	}
	for _, b := range l.Batches {
		if b.Ratio > 1+latencyTolerance {
			t.Errorf("batch %d: whole model %.3f of the original after planning", b.Batch, b.Ratio)
		}
	}
	var gains []float64
	var keptGains []float64
	for _, x := range l.Layers {
		g := x.Batches[0].OriginalMs - x.Batches[0].CompressedMs
		if x.Kept {
			if !strings.HasPrefix(x.Reason, "kept for the whole model") {
				t.Errorf("%s: reason %q", x.Name, x.Reason)
			}
			keptGains = append(keptGains, g)
		} else {
			gains = append(gains, g)
		}
	}
	if len(keptGains) == 0 || len(gains) == 0 {
		t.Fatalf("kept %d layers and replaced %d; want some of each", len(keptGains), len(gains))
	}
	for _, k := range keptGains {
		for _, g := range gains {
			if k > g {
				t.Errorf("kept a layer that saved %v while one that saved %v stays replaced", k, g)
			}
		}
	}
}

// TestLatencyNoRuntime: without a runtime, or with KeepSlower, the
// written model is the one written without Latency; the result says why
// nothing was measured, or reports the measurement without planning.
func TestLatencyNoRuntime(t *testing.T) {
	_, base := runLatency(t, nil)
	r, got := runLatency(t, &Latency{Unavailable: "load ONNX Runtime library /x: no such file"})
	if !bytes.Equal(got, base) {
		t.Error("output differs without a runtime")
	}
	if r.Latency == nil || r.Latency.Measured || r.Latency.Reason != "load ONNX Runtime library /x: no such file" {
		t.Errorf("latency = %+v", r.Latency)
	}
	timer := &costTimer{perNode: 1e9, perWeight: 1}
	r, got = runLatency(t, &Latency{KeepSlower: true, Batches: []int64{1}, timer: timer})
	if !bytes.Equal(got, base) {
		t.Error("output differs with KeepSlower")
	}
	if !r.Latency.Measured || r.Latency.Planned || len(r.Latency.Batches) != 1 || r.Latency.Batches[0].Ratio <= 1 {
		t.Errorf("KeepSlower latency = %+v", r.Latency)
	}
	if len(r.Latency.Notes) == 0 {
		t.Error("no note that the result is slower")
	}
}

// TestLatencyBatches: batch sizes are deduplicated, and a model that fixes
// its batch size is measured at that size only.
func TestLatencyBatches(t *testing.T) {
	_, m := fixture(t)
	fixed := testutil.Fixture(t, "shufflenetv2_op9.onnx")
	mf, err := onnxio.Load(fixed)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		m     *onnxpb.ModelProto
		asked []int64
		want  string
		note  bool
	}{
		{m, []int64{1, 64, 1}, "[1 64]", false},
		{m, nil, "[1]", false},
		{mf, []int64{1, 64}, "[1]", true},
		{mf, []int64{1}, "[1]", false},
	} {
		got, notes := latencyBatches(tc.m, tc.asked)
		if fmt.Sprint(got) != tc.want || (len(notes) > 0) != tc.note {
			t.Errorf("latencyBatches(%v) = %v, %v; want %s (note %v)", tc.asked, got, notes, tc.want, tc.note)
		}
	}
}

// TestLatencyORT times the MobileNetV1 fixture in ONNX Runtime and checks
// only invariants of the decision (no timing thresholds): every layer
// left replaced measured faster at every batch size (see layerVerdict), every kept layer
// has a reason, and the report covers both batch sizes.
func TestLatencyORT(t *testing.T) {
	rt, err := ortapi.Load(testutil.RequireORT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	r, _ := runLatency(t, &Latency{Runtime: rt, Batches: []int64{1, 8}, Budget: time.Second})
	l := r.Latency
	if !l.Planned {
		t.Fatalf("latency %+v", l)
	}
	replaced := map[string]bool{}
	for _, x := range r.Layers {
		replaced[x.Name] = x.Replace
	}
	for _, x := range l.Layers {
		if len(x.Batches) != 2 {
			t.Errorf("%s: %d batch sizes timed", x.Name, len(x.Batches))
		}
		if x.Kept == replaced[x.Name] {
			t.Errorf("%s: kept %v but replaced %v", x.Name, x.Kept, replaced[x.Name])
		}
		if x.Kept && x.Reason == "" {
			t.Errorf("%s kept without a reason", x.Name)
		}
		for _, b := range x.Batches {
			if !x.Kept && !(b.RatioHigh < 1 || b.Ratio < 1-latencyTolerance) {
				t.Errorf("%s replaced, but at batch %d its module measured %s", x.Name, b.Batch, b)
			}
			if b.OriginalMs <= 0 || b.CompressedMs <= 0 || b.Rounds < 3 {
				t.Errorf("%s batch %d: %+v", x.Name, b.Batch, b)
			}
		}
	}
	if r.Replaced > 0 && (!l.Measured || len(l.Batches) != 2) {
		t.Errorf("final measurement %+v", l)
	}
	if r.Replaced == 0 && (l.Measured || l.Reason == "") {
		t.Errorf("nothing replaced, latency %+v", l)
	}
}

// TestLatencyKeepsAllFineTune: when latency keeps every layer, a run with
// fine-tuning writes the original's layers instead of failing to train a
// model without LPR modules, and says so; the caller's FineTune is not
// changed.
func TestLatencyKeepsAllFineTune(t *testing.T) {
	path, m := fixture(t)
	train := images(t, m, "train", 60)
	ft := &FineTune{Train: *train, Seed: 1, Init: InitData, Calib: 30,
		Options: finetune.Options{Steps: 2, Batch: 30, LR: 2e-3, Loss: finetune.Loss{Kind: finetune.LossKD, Temperature: 2}, Train: finetune.TrainLPR}}
	out := filepath.Join(t.TempDir(), "out.onnx")
	r, err := Run(context.Background(), Options{In: path, Out: out, Rule: svd.Policy{Ratio: 0.25, Multiple: 16}, Residual: svd.KindDiag,
		Plan: convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4}, FineTune: ft,
		Latency: &Latency{Batches: []int64{1}, timer: &costTimer{perNode: 1e9, perWeight: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Replaced != 0 || r.FineTune != nil || ft.OnlyReplaced {
		t.Errorf("replaced %d, fine-tune %+v, caller's OnlyReplaced %v", r.Replaced, r.FineTune, ft.OnlyReplaced)
	}
	if len(r.Latency.Notes) == 0 || !strings.Contains(strings.Join(r.Latency.Notes, " "), "nothing was fine-tuned") {
		t.Errorf("notes %v", r.Latency.Notes)
	}
}

// TestLayerVerdict: a module pays when its interval lies below 1, or when
// the interval did not settle but the median is clearly below 1; the
// reason names the batch size where it paid least.
func TestLayerVerdict(t *testing.T) {
	b := func(batch int64, med, lo, hi float64) BatchLatency {
		return BatchLatency{Batch: batch, Ratio: med, RatioLow: lo, RatioHigh: hi, Rounds: 10}
	}
	for _, tc := range []struct {
		bs     []BatchLatency
		kept   bool
		reason string
	}{
		{[]BatchLatency{b(1, 0.8, 0.7, 0.9), b(64, 0.7, 0.6, 0.8)}, false, ""},
		{[]BatchLatency{b(1, 0.9, 0.7, 1.1), b(64, 0.7, 0.6, 0.8)}, false, ""},
		{[]BatchLatency{b(1, 1.07, 1.0, 1.1), b(64, 0.7, 0.6, 0.8)}, true, "slower in ONNX Runtime: 1.07x at batch 1"},
		{[]BatchLatency{b(1, 0.8, 0.7, 0.9), b(64, 0.99, 0.95, 1.03)}, true, "not measurably faster in ONNX Runtime: 0.99x [0.95, 1.03] at batch 64"},
		{[]BatchLatency{b(1, 1.03, 1.0, 1.1), b(64, 1.2, 1.1, 1.3)}, true, "slower in ONNX Runtime: 1.20x at batch 64"},
		{[]BatchLatency{{Batch: 1}}, true, "not measurably faster in ONNX Runtime: 0.00x [0.00, 0.00] at batch 1"},
	} {
		kept, reason := layerVerdict(tc.bs)
		if kept != tc.kept || reason != tc.reason {
			t.Errorf("layerVerdict(%v) = %v, %q; want %v, %q", tc.bs, kept, reason, tc.kept, tc.reason)
		}
	}
}

// flukeTimer is costTimer, except that its first whole-model comparison
// reads slower than the tolerance by its median while its interval reaches
// below it, as one slow round out of two does on a busy machine.
type flukeTimer struct {
	costTimer
	wholeCalls int
}

func (f *flukeTimer) time(base, cand []byte, req timing) (pairTiming, error) {
	t, err := f.costTimer.time(base, cand, req)
	if err != nil {
		return t, err
	}
	m, err := onnxio.Decode(cand)
	if err != nil {
		return t, err
	}
	if m.GetGraph().GetName() != "one layer" {
		f.wholeCalls++
		if f.wholeCalls == 1 {
			t.Ratio = ortapi.Ratio{Median: 1.09, Low: t.Ratio.Median, High: 1.45, N: 2}
		}
	}
	return t, nil
}

// TestLatencyPlanFlukeWholeModel: a whole-model ratio that is slower only
// by its median is measured again, and the second measurement decides: no
// layer is kept for one slow round when every module pays.
func TestLatencyPlanFlukeWholeModel(t *testing.T) {
	timer := &flukeTimer{costTimer: costTimer{perNode: 0, perWeight: 1}}
	r, _ := runLatency(t, &Latency{Batches: []int64{1, 64}, timer: timer})
	l := r.Latency
	if !l.Measured || !l.Planned {
		t.Fatalf("latency %+v", l)
	}
	for _, x := range l.Layers {
		if x.Kept {
			t.Errorf("%s kept: %s", x.Name, x.Reason)
		}
	}
	if timer.wholeCalls < 2 {
		t.Errorf("%d whole-model comparisons, want the fluke measured again", timer.wholeCalls)
	}
}

// TestLatencyMeasuredWhenOnlyTheGraphChanges: with every layer kept (a
// cost model in which each module costs more than its layer), the
// ShuffleNetV2 fixture's output still differs from the original (shape
// folding, the shuffle rewrite), so its latency is measured and reported;
// the MobileNetV1 fixture's output runs as the original does and is not
// measured.
func TestLatencyMeasuredWhenOnlyTheGraphChanges(t *testing.T) {
	for _, tc := range []struct {
		fixture      string
		wantMeasured bool
	}{
		{"shufflenetv2.onnx", true},
		{"mobilenetv1.onnx", false},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			path := testutil.Fixture(t, tc.fixture)
			timer := &costTimer{perNode: 1e9, perWeight: 1}
			r, err := Run(context.Background(), Options{In: path, Rule: svd.Policy{Ratio: 0.25, Multiple: 16}, Residual: svd.KindDiag,
				Plan: convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4}, Tool: "test",
				Latency: &Latency{Batches: []int64{1, 8}, timer: timer}})
			if err != nil {
				t.Fatal(err)
			}
			if r.Replaced != 0 {
				t.Fatalf("%d layers replaced, want every layer kept", r.Replaced)
			}
			if l := r.Latency; l.Measured != tc.wantMeasured || len(l.Batches) == 0 == tc.wantMeasured {
				t.Errorf("measured %v (%s), %d batch sizes; want measured %v", l.Measured, l.Reason, len(l.Batches), tc.wantMeasured)
			}
		})
	}
}
