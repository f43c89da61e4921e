package convert

import (
	"context"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/svd"
)

func TestNewPlanRejectsUnknownLayerRank(t *testing.T) {
	m, err := onnxio.Load("../testdata/models/mobilenetv1.onnx")
	if err != nil {
		t.Fatal(err)
	}
	cands, err := FindCandidates(m, ShapeOptions{})
	if err != nil || len(cands) == 0 {
		t.Fatalf("candidates: %v, %v", cands, err)
	}
	kind, _ := svd.ParseResidual("none")
	good := PlanOptions{Select: Selection{Ranks: map[string]LayerRank{cands[0].Name: {Rank: 4}}}}
	p, err := NewPlan(context.Background(), m, svd.Policy{Ratio: 0.25}, kind, good)
	if err != nil {
		t.Fatal(err)
	}
	if p.Layers[0].Rank != 4 {
		t.Errorf("override gave rank %d, want 4", p.Layers[0].Rank)
	}
	bad := PlanOptions{Select: Selection{Ranks: map[string]LayerRank{"no/such/layer": {Rank: 4}}}}
	if _, err := NewPlan(context.Background(), m, svd.Policy{Ratio: 0.25}, kind, bad); err == nil || !strings.Contains(err.Error(), `"no/such/layer"`) {
		t.Fatalf("unknown layer name: err = %v", err)
	}
}
