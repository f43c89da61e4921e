package pipeline

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/fastform"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/quantize"
	"github.com/lprconv/lprconv/shapefold"
	"github.com/lprconv/lprconv/svd"
)

// TestRunFoldsShapes: Run writes the rewritten model with its shape
// arithmetic folded and in its faster forms (exactly fastform.Rewrite of
// shapefold.Fold of NewPlan + Apply's model) and reports both;
// KeepShapeOps and KeepForms write the rewritten model as it is, and a
// quantized export keeps its diag residuals.
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
	folded, rep, err := shapefold.Fold(rewritten)
	if err != nil {
		t.Fatal(err)
	}
	want, frep, err := fastform.Rewrite(folded, fastform.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(ctx, Options{In: path, Original: m, Rule: rule, Residual: svd.KindDiag, Plan: po, Tool: "test", Relabel: RelabelOff})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(r.Model, want) {
		t.Error("Run's model is not the folded rewritten model")
	}
	if r.ShapeFold == nil || *r.ShapeFold != rep || rep.Removed() == 0 {
		t.Errorf("fold report %+v, want %+v with nodes removed", r.ShapeFold, rep)
	}
	if r.Forms == nil || r.Forms.Shuffles == 0 || len(r.Forms.DiagFolds) == 0 || len(r.Forms.DiagFolds) != len(frep.DiagFolds) {
		t.Errorf("forms report %+v, want %+v with shuffles and folds", r.Forms, frep)
	}
	keep, err := Run(ctx, Options{In: path, Original: m, Rule: rule, Residual: svd.KindDiag, Plan: po, Tool: "test", Relabel: RelabelOff, KeepShapeOps: true, KeepForms: true})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(keep.Model, rewritten) || keep.ShapeFold != nil || keep.Forms != nil {
		t.Error("KeepShapeOps and KeepForms changed the rewritten model or reported a rewrite")
	}
	half, err := Run(ctx, Options{In: path, Original: m, Rule: rule, Residual: svd.KindDiag, Plan: po, Tool: "test", Relabel: RelabelOff, Precision: &Precision{Precision: quantize.FP16}})
	if err != nil {
		t.Fatal(err)
	}
	if half.Forms == nil || half.Forms.Shuffles == 0 || len(half.Forms.DiagFolds) != 0 {
		t.Errorf("fp16 export: forms %+v, want shuffles and no diag folds", half.Forms)
	}
}
