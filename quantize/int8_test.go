package quantize

import (
	"context"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// sliceBatches serves x (NCHW samples of 3x32x32) in batches, then io.EOF.
type sliceBatches struct {
	x   []float32
	pos int
}

func (s *sliceBatches) Next(dst []float32, labels []int) (int, error) {
	const per = 3 * 32 * 32
	n := min(len(dst), len(s.x)-s.pos) / per
	if n == 0 {
		s.pos = 0
		return 0, io.EOF
	}
	copy(dst, s.x[s.pos:s.pos+n*per])
	s.pos += n * per
	return n, nil
}

// TestCalibrateInputRange checks MinMax against the data itself (the graph
// input is one of the calibrated values) and that Percentile narrows it.
func TestCalibrateInputRange(t *testing.T) {
	x, _ := testImages(t)
	x = x[:64*3*32*32]
	lo, hi := x[0], x[0]
	for _, v := range x {
		lo, hi = min(lo, v), max(hi, v)
	}
	m := fixtureModel(t, "mobilenetv1.onnx", false)
	r, err := Calibrate(context.Background(), m, []string{"input"}, &sliceBatches{x: x}, CalibrateOptions{Batch: 16})
	if err != nil {
		t.Fatal(err)
	}
	if r["input"] != (Range{lo, hi}) {
		t.Errorf("MinMax range of the input %v, want [%g, %g]", r["input"], lo, hi)
	}
	p, err := Calibrate(context.Background(), m, []string{"input"}, &sliceBatches{x: x}, CalibrateOptions{Method: Percentile, Percentile: 99})
	if err != nil {
		t.Fatal(err)
	}
	if got := p["input"]; got.Min < lo || got.Max > hi || got.Max-got.Min >= hi-lo {
		t.Errorf("99th-percentile range %v does not narrow [%g, %g]", got, lo, hi)
	}
}

// TestPercentileRange checks the histogram quantiles on exact counts.
func TestPercentileRange(t *testing.T) {
	h := make([]int64, 10) // bins of width 1 over [0, 10]
	for i := range h {
		h[i] = 100
	}
	h[0], h[9] = 1, 1 // 802 values, one in each outer bin
	cases := []struct {
		p    float64
		want Range
	}{
		{100, Range{0, 10}},
		{99.9, Range{0, 10}}, // 0.8 values may lie out on each side: the outer ones stay
		{99.8, Range{1, 9}},  // 1.6 may: the outer ones go

	}
	for _, c := range cases {
		if got := percentileRange(h, Range{0, 10}, c.p); got != c.want {
			t.Errorf("p %g: %v, want %v", c.p, got, c.want)
		}
	}
}

// TestToInt8Structure checks the QDQ graph of the LPR-compressed
// MobileNetV1: every Conv reads a per-channel int8 weight whose
// dequantized values are within half a step of the float weight, and an
// int32 bias at scale s_x·s_c; every residual Add reads two dequantized
// activations; and the Relus are folded.
func TestToInt8Structure(t *testing.T) {
	m := fixtureModel(t, "mobilenetv1.onnx", true)
	q, rep, err := Int8(context.Background(), m, trainLoader(t), Int8Options{Calibrate: CalibrateOptions{Samples: 64}})
	if err != nil {
		t.Fatal(err)
	}
	if err := onnxio.Check(q); err != nil {
		t.Fatal(err)
	}
	inits := map[string]*onnxpb.TensorProto{}
	for _, in := range m.GetGraph().GetInitializer() {
		inits[in.GetName()] = in
	}
	qinits := map[string]*onnxpb.TensorProto{}
	for _, in := range q.GetGraph().GetInitializer() {
		qinits[in.GetName()] = in
	}
	producer := map[string]*onnxpb.NodeProto{}
	for _, n := range q.GetGraph().GetNode() {
		for _, o := range n.GetOutput() {
			producer[o] = n
		}
	}
	float := func(name string) []float32 {
		f, err := onnxio.Float32s(qinits[name])
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	ints := func(name string) []int64 {
		v, err := onnxio.Int64s(qinits[name])
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// The float Conv nodes in order, to find each one's float weight.
	var floatConvs []*onnxpb.NodeProto
	relus := 0
	for _, n := range m.GetGraph().GetNode() {
		switch n.GetOpType() {
		case "Conv":
			floatConvs = append(floatConvs, n)
		case "Relu":
			relus++
		}
	}
	convs, adds := 0, 0
	for _, n := range q.GetGraph().GetNode() {
		switch n.GetOpType() {
		case "Relu":
			t.Errorf("Relu %q was not folded", n.GetName())
		case "Add":
			adds++
			for _, v := range n.GetInput() {
				if p := producer[v]; p == nil || p.GetOpType() != "DequantizeLinear" {
					t.Errorf("Add %q reads %q, not a DequantizeLinear output", n.GetName(), v)
				}
			}
		case "Conv":
			fc := floatConvs[convs]
			convs++
			x := producer[n.GetInput()[0]]
			wd := producer[n.GetInput()[1]]
			if x == nil || x.GetOpType() != "DequantizeLinear" || wd == nil || wd.GetOpType() != "DequantizeLinear" {
				t.Fatalf("Conv %q: input or weight is not dequantized", n.GetName())
			}
			w, err := onnxio.Float32s(inits[fc.GetInput()[1]])
			if err != nil {
				t.Fatal(err)
			}
			wq, ws := ints(wd.GetInput()[0]), float(wd.GetInput()[1])
			if dt := onnxio.DataType(qinits[wd.GetInput()[0]].GetDataType()); dt != onnxio.Int8 {
				t.Fatalf("Conv %q: weight type %s", n.GetName(), dt)
			}
			per := len(w) / len(ws)
			for i, v := range w {
				s := ws[i/per]
				if wq[i] < -127 || wq[i] > 127 || math.Abs(float64(v)-float64(s)*float64(wq[i])) > float64(s)/2*1.0001 {
					t.Fatalf("Conv %q: weight %d = %g quantized to %d at scale %g", n.GetName(), i, v, wq[i], s)
				}
			}
			if len(n.GetInput()) < 3 {
				continue
			}
			bd := producer[n.GetInput()[2]]
			xs := float(x.GetInput()[1])[0]
			bs := float(bd.GetInput()[1])
			b, err := onnxio.Float32s(inits[fc.GetInput()[2]])
			if err != nil {
				t.Fatal(err)
			}
			bq := ints(bd.GetInput()[0])
			for c := range bs {
				if bs[c] != xs*ws[min(c, len(ws)-1)] {
					t.Fatalf("Conv %q: bias scale %g, want %g·%g", n.GetName(), bs[c], xs, ws[c])
				}
				if math.Abs(float64(b[c])-float64(bs[c])*float64(bq[c])) > float64(bs[c])/2*1.0001 {
					t.Fatalf("Conv %q: bias %d = %g quantized to %d at scale %g", n.GetName(), c, b[c], bq[c], bs[c])
				}
			}
		}
	}
	if convs != len(floatConvs) || adds != 7 || rep.FoldedRelu != relus || rep.Nodes["Conv"] != convs || rep.Nodes["Add"] != adds {
		t.Errorf("%d Conv (want %d), %d Add (want 7), report %+v (want %d folded Relus)", convs, len(floatConvs), adds, rep, relus)
	}
}

// TestInt8FusesInORT checks ONNX Runtime's optimized graph of the int8
// LPR models: every Conv became a QLinearConv and every residual Add a
// QLinearAdd, the Gemm a QGemm, and no float Conv is left.
func TestInt8FusesInORT(t *testing.T) {
	testutil.RequireORT(t)
	for _, c := range []struct {
		name string
		adds int
	}{{"mobilenetv1.onnx", 7}, {"shufflenetv2.onnx", 26}} {
		m := fixtureModel(t, c.name, true)
		convs := 0
		for _, n := range m.GetGraph().GetNode() {
			if n.GetOpType() == "Conv" {
				convs++
			}
		}
		q, _, err := Int8(context.Background(), m, trainLoader(t), Int8Options{Calibrate: CalibrateOptions{Samples: 64}})
		if err != nil {
			t.Fatal(err)
		}
		p := save(t, t.TempDir(), "int8.onnx", q)
		opt := p + ".opt.onnx"
		x, _ := testImages(t)
		ortLogits(t, p, x[:3*32*32], ortrun.Options{OptimizedModelPath: opt})
		got := opCounts(t, opt)
		t.Logf("%s: ONNX Runtime's optimized graph: %v", c.name, got)
		if got["QLinearConv"] != convs || got["QLinearAdd"] != c.adds || got["QGemm"] != 1 || got["Conv"] != 0 || got["Gemm"] != 0 {
			t.Errorf("%s: optimized graph %v, want %d QLinearConv, %d QLinearAdd, 1 QGemm and no float Conv or Gemm", c.name, got, convs, c.adds)
		}
	}
}

// TestInt8Errors checks that unsupported models and options fail with a
// message naming the problem.
func TestInt8Errors(t *testing.T) {
	op9, err := onnxio.Load(testutil.Fixture(t, "mobilenetv1_op9.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	m := fixtureModel(t, "mobilenetv1.onnx", false)
	q, _, err := ToInt8(m, map[string]Range{"input": {-1, 3}, "x": {0, 1}}, Int8Options{})
	if err == nil || !strings.Contains(err.Error(), "no calibrated range") {
		t.Errorf("missing ranges: %v", err)
	}
	if _, err := ActivationValues(op9); err == nil || !strings.Contains(err.Error(), "opset 9") {
		t.Errorf("opset 9: %v", err)
	}
	if _, _, err := ToInt8(m, nil, Int8Options{Activations: onnxio.Float}); err == nil {
		t.Error("float activations: no error")
	}
	if _, err := ParseMethod("entropy"); err == nil {
		t.Error("ParseMethod(entropy): no error")
	}
	ranges := map[string]Range{}
	vs, err := ActivationValues(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		ranges[v] = Range{0, 1}
	}
	if q, _, err = ToInt8(m, ranges, Int8Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ActivationValues(q); err == nil || !strings.Contains(err.Error(), "already quantized") {
		t.Errorf("quantizing twice: %v", err)
	}
	if _, err := Calibrate(context.Background(), m, []string{"nope"}, &sliceBatches{x: make([]float32, 3*32*32)}, CalibrateOptions{}); err == nil {
		t.Error("calibrating an unknown value: no error")
	}
}

// opCounts counts the node types of the model at path.
func opCounts(t testing.TB, path string) map[string]int {
	t.Helper()
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c := map[string]int{}
	for _, n := range m.GetGraph().GetNode() {
		c[n.GetOpType()]++
	}
	return c
}

// TestCalibrateFixedBatch calibrates a copy of MobileNetV1 whose input has
// a fixed batch of 4 from batches of 10: the model runs in chunks of 4
// (the last 2 samples of each batch are left out) and the input range is
// that of the samples it saw.
func TestCalibrateFixedBatch(t *testing.T) {
	x, _ := testImages(t)
	x = x[:20*3*32*32]
	m := fixtureModel(t, "mobilenetv1.onnx", false)
	m.GetGraph().GetInput()[0].GetType().GetTensorType().GetShape().GetDim()[0].Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 4}
	r, err := Calibrate(context.Background(), m, []string{"input"}, &sliceBatches{x: x}, CalibrateOptions{Batch: 10})
	if err != nil {
		t.Fatal(err)
	}
	const per = 3 * 32 * 32
	lo, hi := x[0], x[0]
	for b := 0; b < 2; b++ {
		for _, v := range x[b*10*per : (b*10+8)*per] {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if r["input"] != (Range{lo, hi}) {
		t.Errorf("range %v, want [%g, %g]", r["input"], lo, hi)
	}
}
