package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
)

// fixtureData are the data flags of the Fashion-MNIST fixtures.
func fixtureData(t *testing.T, split string) []string {
	return []string{"--data", filepath.Join(testutil.RepoRoot(t), "testdata", "images", split), "--mean", "0.286", "--std", "0.353", "--fit", "pad"}
}

// TestCompressBudget runs --budget end to end: data-free (weight error)
// and with --data (KL sensitivity, then data-aware initialization and a
// few distillation steps); the written model keeps at most the budgeted
// fraction of parameters or MACs and records the allocated ranks.
func TestCompressBudget(t *testing.T) {
	in := testutil.Fixture(t, "mobilenetv1.onnx")
	for _, tc := range []struct {
		name  string
		args  []string
		macs  bool
		limit float64
	}{
		{"params", []string{"--budget", "params=0.7"}, false, 0.7},
		{"macs-data", append([]string{"--budget", "macs=0.85", "--budget-samples", "64", "--steps", "3", "--batch", "32"}, fixtureData(t, "train")...), true, 0.85},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "b.onnx")
			code, stdout, stderr := runCLI(append([]string{"compress", in, "-o", out, "--json", "--multiple", "16"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var r struct {
				compressJSON
				MACsRatio float64  `json:"macs_ratio"`
				Notes     []string `json:"notes"`
			}
			if err := json.Unmarshal([]byte(stdout), &r); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, stdout)
			}
			got := r.ParamsRatio
			if tc.macs {
				got = r.MACsRatio
			}
			if got > tc.limit || got < tc.limit-0.1 {
				t.Errorf("ratio %.4f, want just under %.2f", got, tc.limit)
			}
			if len(r.Notes) == 0 || !strings.HasPrefix(r.Notes[0], "budget:") {
				t.Errorf("notes %q lack the budget line", r.Notes)
			}
			ranks := map[string]int{}
			replaced := 0
			for _, l := range r.Layers {
				if l.Replace {
					ranks[l.Name] = l.Rank
					replaced++
				} else if strings.Contains(l.Reason, "excluded by pattern") {
					t.Errorf("layer %s: reason %q names an internal pattern", l.Name, l.Reason)
				}
			}
			if replaced == 0 {
				t.Fatal("nothing replaced")
			}
			m, err := onnxio.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			md, ok, err := convert.ReadMetadata(m)
			if err != nil || !ok || len(md.Layers) != replaced {
				t.Fatalf("metadata %+v, %v, %v", md, ok, err)
			}
			for _, l := range md.Layers {
				if ranks[l.Name] != l.Rank {
					t.Errorf("layer %s: written rank %d, reported %d", l.Name, l.Rank, ranks[l.Name])
				}
			}
		})
	}
}

func TestCompressBudgetErrors(t *testing.T) {
	in := testutil.Fixture(t, "mobilenetv1.onnx")
	// The smallest fraction a budget can reach puts every layer at its
	// smallest offered rank, 16 (--multiple 16), and keeps the layers that
	// rank 16 does not shrink: what a uniform --rank 16 plans.
	code, stdout, stderr := runCLI("compress", in, "--dry-run", "--multiple", "16", "--rank", "16", "--keep-forms", "--json")
	if code != 0 {
		t.Fatalf("compress --rank 16: exit %d: %s", code, stderr)
	}
	var uniform struct {
		ParamsBefore int64 `json:"params_before"`
		ParamsAfter  int64 `json:"params_after"`
	}
	if err := json.Unmarshal([]byte(stdout), &uniform); err != nil || uniform.ParamsBefore == 0 {
		t.Fatalf("compress --rank 16: %v\n%s", err, stdout)
	}
	smallest := fmt.Sprintf("smallest achievable fraction is %.4f", float64(uniform.ParamsAfter)/float64(uniform.ParamsBefore))
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--budget", "params=0.6", "--rank-ratio", "0.25"}, 2, "drop --rank-ratio"},
		{[]string{"--budget", "params=1.5"}, 2, "at most 1"},
		{[]string{"--budget", "size=0.5"}, 2, "params=F, macs=F or latency=F"},
		{[]string{"--budget", "latency=0.8", "--no-latency"}, 1, "--budget latency needs ONNX Runtime (--ort-lib or ONNXRUNTIME_LIB)"},
		{[]string{"--budget", "latency=0.8", "--ort-lib", filepath.Join(t.TempDir(), "missing.so")}, 1, "--budget latency needs ONNX Runtime (--ort-lib or ONNXRUNTIME_LIB): "},
		{[]string{"--budget-samples", "10"}, 2, "needs --budget"},
		{[]string{"--budget", "params=0.2"}, 1, smallest},
	} {
		code, _, stderr := runCLI(append([]string{"compress", in, "--dry-run", "--multiple", "16"}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", tc.args, code, tc.code, stderr, tc.want)
		}
		// The error is one line (progress messages may precede it).
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if last := lines[len(lines)-1]; !strings.Contains(last, tc.want) {
			t.Errorf("%v: the last line %q does not hold the whole error %q", tc.args, last, tc.want)
		}
	}
}

// TestCompressIncludeNonSquare compresses the ImageNet-shaped MobileNetV2,
// whose 1x1 convolutions all expand or project: without the flag nothing
// is replaced; with it, at full rank (--force) ONNX Runtime's outputs
// match the original's, and at ratio 1/4 the model shrinks and runs.
func TestCompressIncludeNonSquare(t *testing.T) {
	testutil.RequireORT(t)
	if testing.Short() {
		testutil.Skip(t, "ImageNet-shaped MobileNetV2; run without -short")
	}
	in := testutil.ImageNetModel(t, "mobilenetv2.onnx")
	dir := t.TempDir()
	code, stdout, stderr := runCLI("compress", in, "--dry-run", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var plain compressJSON
	if err := json.Unmarshal([]byte(stdout), &plain); err != nil || len(plain.Layers) != 0 {
		t.Fatalf("without --include-nonsquare: %d layers (%v)", len(plain.Layers), err)
	}
	m, err := onnxio.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	shape := []int64{1, 3, 224, 224}
	x := make([]float32, 3*224*224)
	rng := rand.New(rand.NewSource(5))
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	feed := map[string]ortrun.Tensor{m.Graph.Input[0].Name: {Shape: shape, Data: x}}
	want, err := ortrun.Run(in, feed, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"full", []string{"--rank-ratio", "1", "--multiple", "1", "--force"}},
		{"quarter", []string{"--rank-ratio", "0.25"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".onnx")
			code, stdout, stderr := runCLI(append([]string{"compress", in, "-o", out, "--include-nonsquare", "--json"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var r compressJSON
			if err := json.Unmarshal([]byte(stdout), &r); err != nil {
				t.Fatal(err)
			}
			replaced := 0
			for _, l := range r.Layers {
				if l.Replace {
					replaced++
				}
			}
			if replaced < 30 {
				t.Fatalf("%d layers replaced, want the 34 expand/project layers", replaced)
			}
			got, err := ortrun.Run(out, feed, nil)
			if err != nil {
				t.Fatal(err)
			}
			for name, w := range want {
				g := got[name]
				if len(g.Data) != len(w.Data) {
					t.Fatalf("output %s: %d values, want %d", name, len(g.Data), len(w.Data))
				}
				if tc.name != "full" {
					continue
				}
				var d, s float64
				for i, v := range w.Data {
					d = math.Max(d, math.Abs(float64(v-g.Data[i])))
					s = math.Max(s, math.Abs(float64(v)))
				}
				if d/s > 1e-4 {
					t.Errorf("output %s: relative max-abs error %.3g at full rank", name, d/s)
				}
			}
			if tc.name == "quarter" && (r.ParamsAfter >= r.ParamsBefore || r.MACsAfter >= r.MACsBefore) {
				t.Errorf("params %d -> %d, MACs %d -> %d", r.ParamsBefore, r.ParamsAfter, r.MACsBefore, r.MACsAfter)
			}
			t.Logf("%s: %d layers, params %d -> %d (%.3fx)", tc.name, replaced, r.ParamsBefore, r.ParamsAfter, r.ParamsRatio)
		})
	}
}
