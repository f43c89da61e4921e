package pipeline

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/chanperm"
	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/fastform"
	"github.com/lprconv/lprconv/finetune"
	"github.com/lprconv/lprconv/internal/enginetest"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/shapefold"
	"github.com/lprconv/lprconv/svd"
)

// TestRunRelabels: by default Run plans from the original with its
// channels relabeled by chanperm (with the rule's ranks), which computes
// what the given model computes; it writes exactly the forms of that
// plan's rewrite, verifies against the given model, and on MobileNetV1
// folds residuals that follow a ReLU, which the given channel order does
// not allow. RelabelOff, fine-tuning (with RelabelAuto) and residuals without per-channel scales leave the
// order alone.
func TestRunRelabels(t *testing.T) {
	path, m := fixture(t)
	ctx := context.Background()
	rule := svd.Policy{Ratio: 0.25, Multiple: 16}
	po := convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4}
	r, err := Run(ctx, Options{In: path, Original: m, Rule: rule, Residual: svd.KindDiag, Plan: po, Tool: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Given != m || r.Original == m || r.Relabel == nil || r.Relabel.Groups == 0 {
		t.Fatalf("given %p original %p (model %p), report %+v", r.Given, r.Original, m, r.Relabel)
	}
	rank := func(c int) int { k, _, _ := rule.Choose(c, c, nil); return k }
	want, rep, err := chanperm.Permute(ctx, m, chanperm.Options{Rank: rank, SVD: po.SVD})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(r.Original, want) || rep.Groups != r.Relabel.Groups {
		t.Error("Run's original is not chanperm.Permute's")
	}
	_, rewritten := rewrite(t, want, rule, po)
	folded, _, err := shapefold.Fold(rewritten)
	if err != nil {
		t.Fatal(err)
	}
	written, frep, err := fastform.Rewrite(folded, fastform.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(r.Model, written) {
		t.Error("Run's model is not the forms of the relabeled original's rewrite")
	}
	if len(frep.DiagFolds) == 0 {
		t.Error("no diag residual folded after relabeling")
	}
	for _, l := range r.Relabel.Layers {
		if l.Relabeled && l.NegativeAfter != 0 {
			t.Errorf("%s: %d negative diagonal entries after relabeling", l.Name, l.NegativeAfter)
		}
	}
	// Relabeling changes no output beyond round-off.
	a, b := runBatch(t, m), runBatch(t, r.Original)
	for k := range a {
		if e := relL2(a[k].F, b[k].F); e > 1e-5 {
			t.Errorf("output %s: relative error %g after relabeling", k, e)
		}
	}

	keep, err := Run(ctx, Options{In: path, Original: m, Rule: rule, Residual: svd.KindDiag, Plan: po, Tool: "test", Relabel: RelabelOff})
	if err != nil {
		t.Fatal(err)
	}
	if keep.Original != m || keep.Relabel != nil || (keep.Forms != nil && len(keep.Forms.DiagFolds) >= len(frep.DiagFolds)) {
		t.Errorf("RelabelOff: original relabeled %v, report %+v, forms %+v", keep.Original != m, keep.Relabel, keep.Forms)
	}
	// Auto leaves the order when fine-tuning; on relabels then too.
	train := images(t, m, "train", 60)
	for _, mode := range []Relabel{RelabelAuto, RelabelOn} {
		ft := &FineTune{Train: *train, Seed: 1, Init: InitData, Calib: 30,
			Options: finetune.Options{Steps: 2, Batch: 30, LR: 1e-3, Loss: finetune.Loss{Kind: finetune.LossKD, Temperature: 2}, Train: finetune.TrainLPR}}
		fr, err := Run(ctx, Options{In: path, Original: m, Rule: rule, Residual: svd.KindDiag, Plan: po, Tool: "test", Relabel: mode, FineTune: ft})
		if err != nil {
			t.Fatal(err)
		}
		if relabeled := fr.Relabel != nil && fr.Original != m; relabeled != (mode == RelabelOn) {
			t.Errorf("fine-tuning with relabel %s: relabeled %v", mode, relabeled)
		}
	}
	none, err := Run(ctx, Options{In: path, Original: m, Rule: rule, Residual: svd.KindNone, Plan: po, Tool: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if none.Original != m || none.Relabel != nil {
		t.Error("relabeled for a residual without per-channel scales")
	}
}

// runBatch runs m in the engine at batch 2 on fixed inputs.
func runBatch(t *testing.T, m *onnxpb.ModelProto) map[string]*engine.Tensor {
	t.Helper()
	return enginetest.Run(t, m, 2, 5)
}

func relL2(a, b []float32) float64 { return enginetest.RelL2(a, b) }
