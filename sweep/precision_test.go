package sweep

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/pipeline"
	"github.com/lprconv/lprconv/quantize"
	"github.com/lprconv/lprconv/svd"
)

func TestGridPrecisions(t *testing.T) {
	budget := []pipeline.Budget{{Fraction: 0.75}}
	for _, tc := range []struct {
		name       string
		precisions string
		want       []string
		err        string
	}{
		{"default", "", []string{"diag_r0.5", "diag_b0.75", "none_r0.5", "none_b0.75"}, ""},
		{"fp32", "fp32", []string{"diag_r0.5", "diag_b0.75", "none_r0.5", "none_b0.75"}, ""},
		{"all", "fp32,fp16,int8", []string{
			"diag_r0.5", "diag_r0.5_fp16", "diag_r0.5_int8", "diag_b0.75", "diag_b0.75_fp16", "diag_b0.75_int8",
			"none_r0.5", "none_r0.5_fp16", "none_r0.5_int8", "none_b0.75", "none_b0.75_fp16", "none_b0.75_int8"}, ""},
		{"listed order", "int8, fp32", []string{
			"diag_r0.5_int8", "diag_r0.5", "diag_b0.75_int8", "diag_b0.75",
			"none_r0.5_int8", "none_r0.5", "none_b0.75_int8", "none_b0.75"}, ""},
		{"twice", "fp16,fp16", nil, "listed twice"},
		{"unknown", "bf16", nil, "unknown precision"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := ParsePrecisions(tc.precisions)
			var cfgs []Config
			if err == nil {
				cfgs, err = Grid([]string{"diag", "none"}, []float64{0.5}, budget, ps...)
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range cfgs {
				names = append(names, c.Name())
				if c.Quantized() != strings.HasSuffix(c.Name(), "_fp16") && c.Quantized() != strings.HasSuffix(c.Name(), "_int8") {
					t.Errorf("%s: precision %q", c.Name(), c.Precision)
				}
				if !c.Quantized() && c.Precision != "" {
					t.Errorf("%s: fp32 configuration has precision %q, want the zero value", c.Name(), c.Precision)
				}
			}
			if !reflect.DeepEqual(names, tc.want) {
				t.Errorf("names %v, want %v", names, tc.want)
			}
		})
	}
	// Without precisions, Grid gives what it gave before the axis existed.
	plain, err := Grid([]string{"diag"}, []float64{0.25}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Config{{Residual: "diag", Ratio: 0.25}}; !reflect.DeepEqual(plain, want) {
		t.Errorf("Grid without precisions = %+v, want %+v", plain, want)
	}
	if _, err := Grid([]string{"diag"}, []float64{0.25}, nil, "fp8"); err == nil {
		t.Error("Grid accepted precision fp8")
	}
}

// TestSweepPrecisions sweeps one data-free configuration of the
// MobileNetV1 fixture at fp32, fp16 and int8 (int8 calibrated on 64
// training images) and checks the rows, the files and, with ONNX Runtime,
// the quantized files' fidelity measured there.
func TestSweepPrecisions(t *testing.T) {
	root := testutil.RepoRoot(t)
	o := PipelineOptions{
		Model: testutil.Fixture(t, "mobilenetv1.onnx"),
		Data:  filepath.Join(root, "testdata", "images", "train"), Limit: 64, Random: 16,
		Mean: []float32{0.2860}, Std: []float32{0.3530}, BatchSize: 16, Threads: 2, Seed: 1,
		SpectrumResidual: svd.KindDiag, Tool: "lprconv test",
		Precisions: []quantize.Precision{quantize.FP32, quantize.FP16, quantize.INT8},
	}
	p, err := NewPipeline(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cfgs, err := Grid([]string{"diag"}, []float64{0.25}, nil, o.Precisions...)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	res, err := Run(context.Background(), Options{Model: o.Model, Out: out, Configs: cfgs, Jobs: 1}, p)
	if err != nil {
		t.Fatal(err)
	}
	rows := res.Sweep.Rows
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3", len(rows))
	}
	notes := strings.Join(res.Sweep.Meta.Notes, "\n")
	if !strings.Contains(notes, "int8 models are calibrated on "+o.Data+" (64 samples)") {
		t.Errorf("notes do not name the calibration images:\n%s", notes)
	}
	var sizes []int64
	for i, want := range []string{"", "fp16", "int8"} {
		r := rows[i]
		if r.Precision != want || r.Config != cfgs[i].Name() {
			t.Errorf("row %d: config %s precision %q, want %s %q", i, r.Config, r.Precision, cfgs[i].Name(), want)
		}
		st, err := os.Stat(r.Model)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != r.FileBytes {
			t.Errorf("%s: row says %d bytes, file has %d", r.Config, r.FileBytes, st.Size())
		}
		sizes = append(sizes, st.Size())
		// Quantized rows count their own float32 graph, which keeps the
		// diag residuals that the float32 row folds into the layers
		// before (fastform): the same counts for both, and at most one
		// scale per channel of each module more than the float32 row's.
		if i > 0 && (r.Params != rows[1].Params || r.MACs != rows[1].MACs || r.Params < rows[0].Params || r.MACs < rows[0].MACs ||
			float64(r.Params-rows[0].Params) > 0.01*float64(rows[0].Params)) {
			t.Errorf("%s: %d params %d MACs, float32 row %d %d", r.Config, r.Params, r.MACs, rows[0].Params, rows[0].MACs)
		}
		if r.AccBefore != nil || r.AccAfter != nil {
			t.Errorf("%s: accuracy %v %v without labelled data", r.Config, r.AccBefore, r.AccAfter)
		}
	}
	if !(sizes[2] < sizes[1] && sizes[1] < sizes[0]) {
		t.Errorf("file sizes fp32 %d, fp16 %d, int8 %d: want int8 < fp16 < fp32", sizes[0], sizes[1], sizes[2])
	}
	if rows[0].Agreement == nil || rows[0].Cosine == nil {
		t.Fatalf("fp32 row has no fidelity")
	}
	if p.ort == nil {
		for _, r := range rows[1:] {
			if r.Agreement != nil || r.Cosine != nil {
				t.Errorf("%s: fidelity %v %v without ONNX Runtime, want none", r.Config, r.Agreement, r.Cosine)
			}
		}
		if !strings.Contains(notes, "needs ONNX Runtime") {
			t.Errorf("notes do not say why fp16/int8 fidelity is missing:\n%s", notes)
		}
	}
	t.Run("onnxruntime", func(t *testing.T) {
		testutil.RequireORT(t)
		if p.ort == nil {
			t.Fatalf("ONNX Runtime is installed but the sweep did not load it: %v", p.ortErr)
		}
		for _, r := range rows[1:] {
			if r.Agreement == nil || r.Cosine == nil {
				t.Fatalf("%s: no fidelity measured in ONNX Runtime", r.Config)
			}
			t.Logf("%s: agreement %.4f cosine %.4f (fp32 in the engine: %.4f %.4f)", r.Config, *r.Agreement, *r.Cosine, *rows[0].Agreement, *rows[0].Cosine)
			if *r.Agreement < 0.9 || *r.Cosine > 1+1e-9 {
				t.Errorf("%s: agreement %v cosine %v, want agreement >= 0.9", r.Config, *r.Agreement, *r.Cosine)
			}
		}
		// fp16 changes the logits by rounding only, so its fidelity
		// measured in ONNX Runtime matches the engine's float32 figure.
		if d := math.Abs(*rows[1].Cosine - *rows[0].Cosine); d > 0.005 {
			t.Errorf("fp16 cosine %v vs fp32 %v", *rows[1].Cosine, *rows[0].Cosine)
		}
	})

	// A second run takes every configuration from the state.
	again, err := Run(context.Background(), Options{Model: o.Model, Out: out, Configs: cfgs, Jobs: 1}, p)
	if err != nil {
		t.Fatal(err)
	}
	if again.Ran != 0 || again.Skipped != 3 || !reflect.DeepEqual(again.Sweep.Rows[2].Precision, "int8") {
		t.Errorf("second run: ran %d skipped %d; want 0 and 3 with the precision kept", again.Ran, again.Skipped)
	}
}
