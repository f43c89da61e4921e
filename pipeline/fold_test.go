package pipeline

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/shapefold"
	"github.com/lprconv/lprconv/svd"
)

// TestRunFoldsShapes: Run writes the rewritten model with its shape
// arithmetic folded (exactly shapefold.Fold of NewPlan + Apply's model)
// and reports it; KeepShapeOps writes the rewritten model as it is.
func TestRunFoldsShapes(t *testing.T) {
	path := testutil.Fixture(t, "shufflenetv2.onnx")
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rule := svd.Policy{Ratio: 0.25, Multiple: 16}
	po := convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4}
	_, rewritten := rewrite(t, m, rule, po)
	want, rep, err := shapefold.Fold(rewritten)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(ctx, Options{In: path, Original: m, Rule: rule, Residual: svd.KindDiag, Plan: po, Tool: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(r.Model, want) {
		t.Error("Run's model is not the folded rewritten model")
	}
	if r.ShapeFold == nil || *r.ShapeFold != rep || rep.Removed() == 0 {
		t.Errorf("fold report %+v, want %+v with nodes removed", r.ShapeFold, rep)
	}
	keep, err := Run(ctx, Options{In: path, Original: m, Rule: rule, Residual: svd.KindDiag, Plan: po, Tool: "test", KeepShapeOps: true})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(keep.Model, rewritten) || keep.ShapeFold != nil {
		t.Error("KeepShapeOps changed the rewritten model or reported a fold")
	}
}
