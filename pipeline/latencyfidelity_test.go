package pipeline

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/rankalloc"
	"github.com/lprconv/lprconv/svd"
)

// fidelityTo runs the original and each model on s and returns each
// model's fidelity to the original.
func fidelityTo(t *testing.T, orig *onnxpb.ModelProto, s dataset.Samples, models ...*onnxpb.ModelProto) []evaluate.Fidelity {
	t.Helper()
	r, err := s.Open(50)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, err := evaluate.Run(context.Background(), append([]*onnxpb.ModelProto{orig}, models...), r, evaluate.Options{Batch: 50, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	return res.Fidelity
}

// TestLatencyBudgetFidelity: at the cost of a uniform rank ratio in an
// injected cost model (costTimer standing in for ONNX Runtime, so the
// costs are exact and the same in every run), --budget latency=F with F
// the uniform model's whole-model cost ratio gives a model that costs no
// more and follows the original at least as closely: on the 500 held-out
// test images when its sensitivities are the KL divergence on the
// training images, and on random inputs other than those it measured
// when it has no images (rankalloc.MetricRandom). Its predicted loss is
// also at most the uniform ranks' predicted loss (the dynamic program's
// optimum over a set of choices that includes them).
func TestLatencyBudgetFidelity(t *testing.T) {
	path, m := fixture(t)
	train, test := images(t, m, "train", 0), images(t, m, "test", 0)
	in, err := evaluate.ModelInput(m)
	if err != nil {
		t.Fatal(err)
	}
	random := dataset.Noise{Count: 256, Size: in.Channels * in.Height * in.Width, Seed: 99}
	po := convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4}
	for _, tc := range []struct {
		name  string
		ratio float64
		batch int64
		timer costTimer
		data  *dataset.Subset
	}{
		{"batch 1 (node overhead), kl", 0.25, 1, costTimer{perNode: 2000, perWeight: 1}, train},
		{"batch 64 (weights), kl", 0.25, 64, costTimer{perNode: 2000, perWeight: 1}, train},
		{"batch 64 (weights), kl, ratio 1/8", 0.125, 64, costTimer{perNode: 2000, perWeight: 1}, train},
		{"batch 1 (node overhead), random", 0.25, 1, costTimer{perNode: 2000, perWeight: 1}, nil},
		{"batch 64 (weights), random", 0.25, 64, costTimer{perNode: 2000, perWeight: 1}, nil},
		{"batch 64 (weights), random, ratio 1/8", 0.125, 64, costTimer{perNode: 2000, perWeight: 1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			timer := tc.timer
			uni, err := Run(context.Background(), Options{In: path, Out: filepath.Join(dir, "u.onnx"), Rule: svd.Policy{Ratio: tc.ratio, Multiple: 16},
				Residual: svd.KindDiag, Plan: po, Tool: "test", Latency: &Latency{Batches: []int64{tc.batch}, KeepSlower: true, timer: &timer}})
			if err != nil {
				t.Fatal(err)
			}
			f := uni.Latency.Batches[0].Ratio
			timer = tc.timer
			bud, err := Run(context.Background(), Options{In: path, Out: filepath.Join(dir, "b.onnx"), Residual: svd.KindDiag, Plan: po, Tool: "test",
				Budget:  &BudgetOptions{Target: Budget{Resource: LatencyResource, Fraction: f}, Multiple: 16, Data: tc.data, Seed: 1},
				Latency: &Latency{Batches: []int64{tc.batch}, timer: &timer}})
			if err != nil {
				t.Fatal(err)
			}
			if got := bud.Latency.Batches[0].Ratio; got > f+1e-9 {
				t.Errorf("budget model costs %.4f, the uniform one %.4f", got, f)
			}
			var uniLoss float64
			for _, l := range uni.Plan.Layers {
				if !l.Replace {
					continue
				}
				for _, s := range bud.Allocation.Sensitivity {
					if s.Name == l.Name {
						uniLoss += s.At(l.Rank)
					}
				}
			}
			if bud.Allocation.Loss > uniLoss*(1+1e-9) {
				t.Errorf("budget predicts loss %.6g, the uniform ranks %.6g", bud.Allocation.Loss, uniLoss)
			}
			var on dataset.Samples = test
			if tc.data == nil {
				on = random
			}
			um, err := onnxio.Load(filepath.Join(dir, "u.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			bm, err := onnxio.Load(filepath.Join(dir, "b.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			fid := fidelityTo(t, m, on, um, bm)
			t.Logf("cost %.4f / %.4f, ranks %v / %v, agreement %.4f / %.4f, relative L2 %.4f / %.4f, predicted loss %.4g / %.4g (%s; uniform / budget)",
				f, bud.Latency.Batches[0].Ratio, ranksOf(uni.Plan), ranksOf(bud.Plan), fid[0].Agreement(), fid[1].Agreement(),
				fid[0].RelativeL2(), fid[1].RelativeL2(), uniLoss, bud.Allocation.Loss, bud.Allocation.Metric)
			if fid[1].Agreement() < fid[0].Agreement() || fid[1].RelativeL2() > fid[0].RelativeL2() {
				t.Errorf("on %s the budget model agrees %.4f (relative L2 %.4f), the uniform one %.4f (%.4f)",
					on, fid[1].Agreement(), fid[1].RelativeL2(), fid[0].Agreement(), fid[0].RelativeL2())
			}
		})
	}
}

// ranksOf lists the rank of every candidate of p, 0 for a kept one.
func ranksOf(p *convert.Plan) []int {
	var rs []int
	for _, l := range p.Layers {
		r := 0
		if l.Replace {
			r = l.Rank
		}
		rs = append(rs, r)
	}
	return rs
}

// TestLatencyBudgetConstantOutputs: a data-free latency budget on a model
// whose outputs do not depend on its input (the fixture with its first
// convolution's weights zeroed) cannot measure sensitivities on random
// inputs; it falls back to the weight error and says so in the notes.
func TestLatencyBudgetConstantOutputs(t *testing.T) {
	path, m := fixture(t)
	var first string
	for _, n := range m.GetGraph().GetNode() {
		if n.GetOpType() == "Conv" {
			first = n.GetInput()[1]
			break
		}
	}
	inits := m.GetGraph().GetInitializer()
	for i, init := range inits {
		if init.GetName() == first {
			w, err := onnxio.Float32s(init)
			if err != nil {
				t.Fatal(err)
			}
			inits[i] = onnxio.NewFloat32(first, init.GetDims(), make([]float32, len(w)))
		}
	}
	for _, tc := range []struct {
		model  *onnxpb.ModelProto
		metric string
	}{{nil, rankalloc.MetricRandom}, {m, rankalloc.MetricWeights}} {
		r, err := Run(context.Background(), Options{In: path, Original: tc.model, Residual: svd.KindDiag, Tool: "test",
			Plan:    convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4},
			Budget:  &BudgetOptions{Target: Budget{Resource: LatencyResource, Fraction: 0.8}, Multiple: 16},
			Latency: &Latency{Batches: []int64{64}, timer: &costTimer{perNode: 2000, perWeight: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		noted := strings.Contains(strings.Join(r.Latency.Notes, "\n"), "hardly depend on the input")
		if r.Allocation.Metric != tc.metric || noted != (tc.metric == rankalloc.MetricWeights) {
			t.Errorf("zeroed %v: metric %q, notes %q", tc.model != nil, r.Allocation.Metric, r.Latency.Notes)
		}
	}
}
