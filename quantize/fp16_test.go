package quantize

import (
	"math"
	"testing"

	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
)

// TestToFloat16Edges converts whole models (every operator, so that the
// graph output comes from a float16 node and needs the output Cast), and
// the opset-9 fixture with the defaults, and checks: onnx.checker passes,
// the input and output keep their names and float32 type, the original is
// untouched, and ONNX Runtime's logits are within float16 accuracy of the
// float32 model's.
func TestToFloat16Edges(t *testing.T) {
	testutil.RequireORT(t)
	x, _ := testImages(t)
	x = x[:20*3*32*32]
	dir := t.TempDir()
	for _, c := range []struct {
		fixture string
		keep    []string
	}{
		{"mobilenetv1.onnx", []string{}},
		{"shufflenetv2.onnx", []string{}},
		{"mobilenetv1_op9.onnx", nil},
	} {
		m, err := onnxio.Load(testutil.Fixture(t, c.fixture))
		if err != nil {
			t.Fatal(err)
		}
		before, err := onnxio.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		h, rep, err := ToFloat16(m, FP16Options{KeepFloat32: c.keep})
		if err != nil {
			t.Fatalf("%s: %v", c.fixture, err)
		}
		after, err := onnxio.Encode(m)
		if err != nil || string(after) != string(before) {
			t.Fatalf("%s: ToFloat16 modified its input", c.fixture)
		}
		if c.keep != nil && len(rep.Kept) != 0 {
			t.Errorf("%s: kept %v in float32 with an empty keep list", c.fixture, rep.Kept)
		}
		g := h.GetGraph()
		if g.GetInput()[0].GetName() != "input" || g.GetOutput()[0].GetName() != "logits" ||
			onnxio.DataType(g.GetInput()[0].GetType().GetTensorType().GetElemType()) != onnxio.Float ||
			onnxio.DataType(g.GetOutput()[0].GetType().GetTensorType().GetElemType()) != onnxio.Float {
			t.Errorf("%s: inputs %v outputs %v", c.fixture, g.GetInput(), g.GetOutput())
		}
		ref := save(t, dir, "ref.onnx", m)
		p := save(t, dir, "fp16.onnx", h)
		testutil.CheckONNX(t, p)
		want := ortLogits(t, ref, x, ortrun.Options{})
		got := ortLogits(t, p, x, ortrun.Options{})
		var worst float64
		for i := range want {
			worst = max(worst, math.Abs(float64(got[i]-want[i]))/(1+math.Abs(float64(want[i]))))
		}
		t.Logf("%s: largest relative logit difference %.2g, report %+v", c.fixture, worst, rep)
		// float16 has an 11-bit significand (relative step 2⁻¹⁰ ≈ 1e-3);
		// rounding accumulated over ~30 layers stays within a few percent.
		if worst > 0.05 {
			t.Errorf("%s: logits differ from float32 by up to %.3g (relative)", c.fixture, worst)
		}
	}
}
