package pipeline

import (
	"context"
	"testing"

	"github.com/lprconv/lprconv/chanperm"
	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// TestIsolatedPairFolded: where the written model folds a module's diag
// residual into the layer before it, the layer is timed alone in the same
// form: the module model reads its input through a group-C Conv into which
// the residual is folded (no residual Conv left), and computes what the
// unfolded module computes.
func TestIsolatedPairFolded(t *testing.T) {
	pm, plan := relabeledPlan(t)
	folded, err := foldedLayers(&Options{}, pm, plan)
	if err != nil {
		t.Fatal(err)
	}
	if keep, _ := foldedLayers(&Options{KeepForms: true}, pm, plan); len(keep) != 0 {
		t.Errorf("KeepForms: %d layers folded", len(keep))
	}
	tested := 0
	for _, l := range plan.Layers {
		if !l.Replace || !folded[l.Name] {
			continue
		}
		_, plain, err := isolatedPair(pm, plan.Residual, l, 4, 4, false)
		if err != nil {
			t.Fatal(err)
		}
		_, mod, err := isolatedPair(pm, plan.Residual, l, 4, 4, true)
		if err != nil {
			t.Fatal(err)
		}
		a, err := onnxio.Decode(plain)
		if err != nil {
			t.Fatal(err)
		}
		b, err := onnxio.Decode(mod)
		if err != nil {
			t.Fatal(err)
		}
		convs := 0
		for _, n := range b.GetGraph().GetNode() {
			if n.GetOpType() == "Conv" {
				convs++
			}
		}
		if convs != 3 {
			t.Errorf("%s: %d Convs in the folded module model, want 3 (producer, V, U)", l.Name, convs)
		}
		ya, yb := runBatch(t, a), runBatch(t, b)
		if e := relL2(yb["out"].F, ya["out"].F); e > 1e-5 {
			t.Errorf("%s: folded module differs from the module by %g", l.Name, e)
		}
		tested++
	}
	if tested == 0 {
		t.Fatal("no layer folds after relabeling")
	}
}

// relabeledPlan returns the MobileNetV1 fixture relabeled (chanperm) and
// its data-free diag-residual plan at rank ratio 1/4.
func relabeledPlan(t *testing.T) (*onnxpb.ModelProto, *convert.Plan) {
	t.Helper()
	_, m := fixture(t)
	ctx := context.Background()
	rule := svd.Policy{Ratio: 0.25, Multiple: 16}
	rank := func(c int) int { k, _, _ := rule.Choose(c, c, nil); return k }
	pm, _, err := chanperm.Permute(ctx, m, chanperm.Options{Rank: rank})
	if err != nil {
		t.Fatal(err)
	}
	po := convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4}
	plan, err := convert.NewPlan(ctx, pm, rule, svd.KindDiag, po)
	if err != nil {
		t.Fatal(err)
	}
	return pm, plan
}

// TestUnitScales: a latency budget's zero factors get unit diag scales
// where the written model folds the residual (so that the timed model
// folds it too), in a copy; other layers come back as they were.
func TestUnitScales(t *testing.T) {
	l := convert.LayerPlan{Replace: true, Factors: &svd.Factors{Diag: make([]float32, 4)}}
	l.Name = "a"
	got := unitScales(l, map[string]bool{"a": true})
	for _, v := range got.Factors.Diag {
		if v != 1 {
			t.Fatalf("scales %v", got.Factors.Diag)
		}
	}
	if l.Factors.Diag[0] != 0 {
		t.Error("the input's factors were changed")
	}
	if u := unitScales(l, map[string]bool{"b": true}); u.Factors != l.Factors {
		t.Error("a layer that does not fold was changed")
	}
	l.Replace = false
	if u := unitScales(l, map[string]bool{"a": true}); u.Factors != l.Factors {
		t.Error("a kept layer was changed")
	}
}
