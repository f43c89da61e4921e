package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// TestInvalidFlagValues checks that an explicitly given value outside a
// flag's range is a usage error naming the flag and the range, and never
// silently becomes the default.
func TestInvalidFlagValues(t *testing.T) {
	dir := t.TempDir()
	in := pointwiseModel(t, dir, 16)
	out := filepath.Join(dir, "out.onnx")
	images := filepath.Join(testutil.RepoRoot(t), "testdata", "images", "test")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"compress", in, "-o", out, "--rank-ratio", "0"}, "--rank-ratio 0: must be in (0, 1]"},
		{[]string{"compress", in, "-o", out, "--rank-ratio", "1.5"}, "--rank-ratio 1.5: must be in (0, 1]"},
		{[]string{"compress", in, "-o", out, "--energy", "0"}, "--energy 0: must be in (0, 1]"},
		{[]string{"compress", in, "-o", out, "--threads", "-2"}, "--threads -2: must be >= 0"},
		{[]string{"compress", in, "-o", out, "--workers", "-1"}, "--workers -1: must be >= 0"},
		{[]string{"compress", in, "-o", out, "--multiple", "0"}, "--multiple 0: must be >= 1"},
		{[]string{"compress", in, "-o", out, "--channel-align", "0"}, "--channel-align 0: must be >= 1"},
		{[]string{"compress", in, "-o", out, "--batch", "0"}, "--batch 0: must be >= 1"},
		{[]string{"compress", in, "-o", out, "--data", images, "--lr", "-1"}, "--lr -1: must be > 0"},
		{[]string{"compress", in, "-o", out, "--data", images, "--temperature", "0"}, "--temperature 0: must be > 0"},
		{[]string{"compress", in, "-o", out, "--data", images, "--val-fraction", "1"}, "--val-fraction 1: must be in [0, 1)"},
		{[]string{"compress", in, "-o", out, "--data", images, "--steps", "0"}, "--steps 0: must be >= 1"},
		{[]string{"compress", in, "-o", out, "--data", images, "--std", "-0.3"}, "must be finite and positive"},
		{[]string{"eval", in, "--data", images, "--threads", "-2"}, "--threads -2: must be >= 0"},
		{[]string{"compare", in, in, "--random", "0"}, "--random 0: must be >= 1"},
		{[]string{"sweep", in, "--out", dir, "--jobs", "0"}, "--jobs 0: must be >= 1"},
	} {
		code, _, stderr := runCLI(tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// nanBiasModel writes the MobileNetV1 fixture with a NaN classifier bias
// (the rank-1 float initializer read by the last node that reads one).
func nanBiasModel(t *testing.T, dir string) string {
	t.Helper()
	m, err := onnxio.Load(testutil.Fixture(t, "mobilenetv1.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	inits := map[string]*onnxpb.TensorProto{}
	for _, ti := range m.Graph.Initializer {
		inits[ti.GetName()] = ti
	}
	var bias *onnxpb.TensorProto
	for i := len(m.Graph.Node) - 1; i >= 0 && bias == nil; i-- {
		for _, name := range m.Graph.Node[i].Input {
			if ti := inits[name]; ti != nil && len(ti.Dims) == 1 && ti.GetDataType() == int32(onnxio.Float) {
				bias = ti
				break
			}
		}
	}
	if bias == nil {
		t.Fatal("no classifier bias in the fixture")
	}
	nan := make([]float32, bias.Dims[0])
	for i := range nan {
		nan[i] = float32(math.NaN())
	}
	*bias = *onnxio.NewFloat32(bias.GetName(), bias.GetDims(), nan)
	p := filepath.Join(dir, "nan.onnx")
	if err := onnxio.Save(p, m, onnxio.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNonFiniteLogitsFail checks that eval and compare never score NaN
// logits as correct, report how many samples gave them, and exit non-zero
// unless --allow-nonfinite is given.
func TestNonFiniteLogitsFail(t *testing.T) {
	dir := t.TempDir()
	bad := nanBiasModel(t, dir)
	good := testutil.Fixture(t, "mobilenetv1.onnx")
	images := filepath.Join(testutil.RepoRoot(t), "testdata", "images", "test")
	norm := []string{"--data", images, "--limit", "40", "--mean", "0.286", "--std", "0.353"}
	for _, tc := range []struct {
		args     []string
		wantCode int
		want     string
	}{
		{append([]string{"eval", bad}, norm...), 3, "NaN or infinite logits"},
		{append([]string{"eval", bad, "--allow-nonfinite"}, norm...), 0, "top-1       0.00%"},
		{append([]string{"eval", bad, "--allow-nonfinite"}, norm...), 0, "non-finite  40 samples"},
		{append([]string{"compare", good, bad}, norm...), 3, "model 2 gave NaN or infinite logits for 40 of 40 samples"},
		{append([]string{"compare", good, bad, "--allow-nonfinite"}, norm...), 0, "agreement   0.00%"},
		{[]string{"compare", good, bad, "--random", "8"}, 3, "NaN or infinite logits"},
	} {
		code, stdout, stderr := runCLI(tc.args...)
		if code != tc.wantCode || !strings.Contains(stdout+stderr, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, stdout, stderr, tc.wantCode, tc.want)
		}
	}
}

// TestCompressLayerRankWithData: --layer-rank and --exclude with --data
// (whose checkpoint fingerprint reads every set flag) compress without a
// panic.
func TestCompressLayerRankWithData(t *testing.T) {
	in := testutil.Fixture(t, "mobilenetv1.onnx")
	out := filepath.Join(t.TempDir(), "out.onnx")
	images := filepath.Join(testutil.RepoRoot(t), "testdata", "images", "test")
	code, _, stderr := runCLI("compress", in, "-o", out, "--data", images, "--mean", "0.286", "--std", "0.353", "--steps", "1", "--limit", "64", "--batch", "16",
		"--layer-rank", "/features/features.13/features.13.1/features.13.1.0/Conv=32", "--exclude", "features\\.3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}
