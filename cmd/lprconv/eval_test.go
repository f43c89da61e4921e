package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/evaluate"
)

const (
	fixtureModel  = "../../testdata/models/mobilenetv1.onnx"
	fixtureImages = "../../testdata/images/test"
)

func TestEvalFixture(t *testing.T) {
	code, out, errOut := runCLI("eval", fixtureModel, "--data", fixtureImages, "--mean", "0.286", "--std", "0.353", "--json", "--batch", "50")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r evaluate.ModelReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bad JSON %q: %v", out, err)
	}
	if r.Samples != 500 || r.Labelled != 500 || r.Top1 == nil || r.Top5 == nil || r.ImagesPerSec <= 0 {
		t.Fatalf("report %+v", r)
	}
	// PyTorch measured 92.6% top-1 on these 500 images (fixtures.json).
	if math.Abs(*r.Top1-92.6) > 0.1 {
		t.Errorf("top-1 %.2f%%, PyTorch measured 92.60%%", *r.Top1)
	}
	if !strings.Contains(errOut, "500/500") {
		t.Errorf("no final progress line on stderr: %q", errOut)
	}
}

func TestEvalErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.onnx")
	if err := os.WriteFile(bad, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"eval", fixtureModel}, "--data is required"},
		{[]string{"eval"}, "expected one MODEL"},
		{[]string{"eval", bad, "--data", fixtureImages}, "bad.onnx"},
		{[]string{"eval", fixtureModel, "--data", filepath.Join(dir, "missing")}, "missing"},
		{[]string{"eval", fixtureModel, "--data", fixtureImages, "--mean", "x"}, "--mean"},
		{[]string{"eval", fixtureModel, "--data", fixtureImages, "--fit", "stretch"}, "--fit"},
		{[]string{"eval", fixtureModel, "--data", fixtureImages, "--batch", "0"}, "--batch"},
		{[]string{"compare", fixtureModel}, "two models"},
		{[]string{"compare", fixtureModel, fixtureModel}, "--random"},
	} {
		code, _, errOut := runCLI(tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want an error mentioning %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestCompareFixtureVariants(t *testing.T) {
	code, out, errOut := runCLI("compare", fixtureModel, "../../testdata/models/mobilenetv1_bn.onnx", "--data", fixtureImages,
		"--mean", "0.286", "--std", "0.353", "--limit", "100", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r evaluate.Comparison
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bad JSON %q: %v", out, err)
	}
	if r.Samples != 100 || r.Agreement != 100 || r.RelativeMaxAbs > 1e-4 || r.Cosine < 0.99999 || r.Top1A == nil || r.Top1B == nil {
		t.Fatalf("report %+v", r)
	}
	code, out, errOut = runCLI("compare", fixtureModel, "../../testdata/models/mobilenetv1_op9.onnx", "--random", "20")
	if code != 0 || !strings.Contains(out, "agreement   100.00%") || !strings.Contains(out, "n/a (no labels)") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
