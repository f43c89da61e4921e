package main

import (
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

type compressJSON struct {
	Output   string `json:"output"`
	Residual string `json:"residual"`
	DryRun   bool   `json:"dry_run"`
	Layers   []struct {
		Name         string  `json:"name"`
		Channels     int     `json:"channels"`
		Rank         int     `json:"rank"`
		Replace      bool    `json:"replace"`
		Reason       string  `json:"reason"`
		RelErr       float64 `json:"rel_err"`
		ParamsBefore int64   `json:"params_before"`
		ParamsAfter  int64   `json:"params_after"`
	} `json:"layers"`
	ParamsBefore    int64   `json:"params_before"`
	ParamsAfter     int64   `json:"params_after"`
	MACsBefore      int64   `json:"macs_before"`
	MACsAfter       int64   `json:"macs_after"`
	FileBytesBefore int64   `json:"file_bytes_before"`
	FileBytesAfter  int64   `json:"file_bytes_after"`
	ParamsRatio     float64 `json:"params_ratio"`
}

func TestCompressWritesModel(t *testing.T) {
	dir := t.TempDir()
	in := pointwiseModel(t, dir, 32)
	out := filepath.Join(dir, "out.onnx")
	code, stdout, stderr := runCLI("compress", in, "-o", out, "--rank", "4", "--multiple", "1", "--residual", "identity", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r compressJSON
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	// 32x32 weight + 32 bias (all zero, dropped) -> 4·64
	if len(r.Layers) != 1 || !r.Layers[0].Replace || r.Layers[0].Rank != 4 || r.Layers[0].ParamsBefore != 32*32+32 || r.Layers[0].ParamsAfter != 4*64 {
		t.Fatalf("layers %+v", r.Layers)
	}
	if r.ParamsBefore != 32*32+32 || r.ParamsAfter != 4*64 || r.MACsAfter != 4*64*64 || r.FileBytesAfter != st.Size() || r.Residual != "identity" || r.Output != out {
		t.Fatalf("totals %+v", r)
	}
	m, err := onnxio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	md, ok, err := convert.ReadMetadata(m)
	if err != nil || !ok || md.Residual != "identity" || len(md.Layers) != 1 || md.Layers[0].Rank != 4 || !strings.HasPrefix(md.Tool, "lprconv ") {
		t.Fatalf("metadata %+v %v %v", md, ok, err)
	}
	if strings.Contains(stderr, "lprconv:") {
		t.Errorf("stderr has an error: %s", stderr)
	}
}

func TestCompressTable(t *testing.T) {
	dir := t.TempDir()
	in := pointwiseModel(t, dir, 16)
	code, stdout, stderr := runCLI("compress", in, "--dry-run", "--rank-ratio", "0.5", "--multiple", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// ratio 0.5 of 16 = 8, rounded up to 9: 9·32 > 256, so the layer is kept
	for _, want := range []string{"pw", "16", "keep: rank 9", "replaced:  0 of 1", "params:", "MACs:", "estimated; dry run"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("dry run wrote files: %v", entries)
	}
}

func TestCompressPathSafety(t *testing.T) {
	dir := t.TempDir()
	in := pointwiseModel(t, dir, 8)
	orig, _ := os.ReadFile(in)
	link := filepath.Join(dir, "link.onnx")
	if err := os.Symlink(in, link); err != nil {
		t.Fatal(err)
	}
	existing := filepath.Join(dir, "existing.onnx")
	if err := os.WriteFile(existing, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A model whose own external data file is out.onnx.data (saved as
	// out.onnx, then renamed): compress -o out.onnx --external-data would
	// write over the input's tensors.
	extIn := filepath.Join(dir, "ext.onnx")
	extOut := filepath.Join(dir, "out.onnx")
	m, err := onnxio.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := onnxio.Save(extOut, m, onnxio.SaveOptions{ExternalData: true, ExternalThreshold: 1}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(extOut, extIn); err != nil {
		t.Fatal(err)
	}
	extData, _ := os.ReadFile(extOut + ".data")
	// An unrelated existing data file next to another output.
	other := filepath.Join(dir, "other.onnx")
	if err := os.WriteFile(other+".data", []byte("keep me too"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"compress", in, "-o", in, "--overwrite"}, "is an input file"},
		{[]string{"compress", in, "-o", filepath.Join(dir, ".", "pw.onnx"), "--overwrite"}, "is an input file"},
		{[]string{"compress", link, "-o", in, "--overwrite"}, "is an input file"},
		{[]string{"compress", in, "-o", link, "--overwrite"}, "is the input file"},
		{[]string{"compress", extIn, "-o", extOut, "--external-data", "--overwrite"}, "out.onnx.data is an input file"},
		{[]string{"compress", in, "-o", other, "--external-data"}, "other.onnx.data exists; pass --overwrite"},
		{[]string{"compress", in, "-o", "/dev/full", "--overwrite"}, "not a regular file"},
		{[]string{"compress", in, "-o", existing}, "exists; pass --overwrite"},
		{[]string{"compress", in, "-o", dir}, "not a regular file"},
		{[]string{"compress", in, "-o", filepath.Join(dir, "no", "x.onnx")}, "does not exist"},
		{[]string{"compress", in}, "no output file"},
		{[]string{"compress", in, "--dry-run", "-o", existing}, "--dry-run writes nothing"},
		{[]string{"compress"}, "expected one input model"},
		{[]string{"compress", in, "-o", "x.onnx", "--residual", "dw2"}, "--residual"},
		{[]string{"compress", in, "-o", "x.onnx", "--rank", "0"}, "--rank 0"},
		{[]string{"compress", in, "-o", "x.onnx", "--rank", "2", "--rank-ratio", "0.5"}, "exclusive"},
		{[]string{"compress", in, "-o", "x.onnx", "--layer-rank", "pw"}, "NAME=R"},
		{[]string{"compress", in, "-o", "x.onnx", "--exclude", "("}, "--exclude"},
	} {
		code, _, stderr := runCLI(tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	if got, _ := os.ReadFile(in); string(got) != string(orig) {
		t.Fatal("input model changed")
	}
	if got, _ := os.ReadFile(existing); string(got) != "keep me" {
		t.Fatal("existing output changed without --overwrite")
	}
	if got, _ := os.ReadFile(extOut + ".data"); string(got) != string(extData) {
		t.Fatal("the input's external data file changed")
	}
	if _, err := onnxio.Load(extIn); err != nil {
		t.Fatalf("input with external data no longer loads: %v", err)
	}
	if got, _ := os.ReadFile(other + ".data"); string(got) != "keep me too" {
		t.Fatal("an existing data file changed without --overwrite")
	}
	if fi, err := os.Stat("/dev/full"); err == nil && fi.Mode().IsRegular() {
		t.Fatal("/dev/full was replaced by a regular file")
	}
	code, _, stderr := runCLI("compress", in, "-o", existing, "--overwrite", "--rank", "1")
	if code != 0 {
		t.Fatalf("--overwrite: exit %d: %s", code, stderr)
	}
	if _, err := onnxio.Load(existing); err != nil {
		t.Fatalf("overwritten output: %v", err)
	}
}

func TestCompressPolicyFlags(t *testing.T) {
	dir := t.TempDir()
	in := pointwiseModel(t, dir, 16)
	for _, tc := range []struct {
		args    []string
		rank    int
		replace bool
	}{
		{[]string{"--rank", "3", "--multiple", "1"}, 3, true},
		{[]string{"--multiple", "1"}, 4, true}, // default ratio 0.25
		{[]string{}, 16, false},                // default multiple 16: 16·32 >= 16²
		{[]string{"--rank-ratio", "0.3", "--multiple", "4"}, 8, false},
		{[]string{"--rank", "2", "--layer-rank", "pw=5"}, 5, true}, // overrides are not rounded
		{[]string{"--rank", "12", "--force", "--multiple", "1"}, 12, true},
		{[]string{"--rank", "2", "--exclude", "^p{1,2}w$"}, 0, false},
		{[]string{"--energy", "1"}, 16, false},
	} {
		args := append([]string{"compress", in, "--dry-run", "--json"}, tc.args...)
		code, stdout, stderr := runCLI(args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr)
		}
		var r compressJSON
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatal(err)
		}
		if l := r.Layers[0]; l.Rank != tc.rank || l.Replace != tc.replace {
			t.Errorf("%v: rank %d replace %v (%s); want %d %v", tc.args, l.Rank, l.Replace, l.Reason, tc.rank, tc.replace)
		}
	}
}

func TestCompressChannelAlign(t *testing.T) {
	in := pointwiseModel(t, t.TempDir(), 18) // 18 channels: not a multiple of 4
	for _, tc := range []struct {
		args    []string
		replace bool
	}{
		{[]string{"--rank", "2", "--multiple", "1"}, false},
		{[]string{"--rank", "2", "--multiple", "1", "--channel-align", "1"}, true},
		{[]string{"--rank", "2", "--multiple", "1", "--channel-align", "2"}, true},
	} {
		code, stdout, stderr := runCLI(append([]string{"compress", in, "--dry-run", "--json"}, tc.args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr)
		}
		var r compressJSON
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatal(err)
		}
		if l := r.Layers[0]; l.Replace != tc.replace || (!l.Replace && !strings.Contains(l.Reason, "not a multiple of 4")) {
			t.Errorf("%v: replace %v (%s), want %v", tc.args, l.Replace, l.Reason, tc.replace)
		}
	}
}

func TestCompressExternalData(t *testing.T) {
	dir := t.TempDir()
	in := pointwiseModel(t, dir, 64)
	out := filepath.Join(dir, "ext.onnx")
	code, _, stderr := runCLI("compress", in, "-o", out, "--rank", "8", "--multiple", "1", "--external-data")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(onnxio.ExternalDataName(out)); err != nil {
		if _, err2 := os.Stat(filepath.Join(dir, onnxio.ExternalDataName(out))); err2 != nil {
			t.Fatalf("no external data file: %v", err)
		}
	}
	if _, err := onnxio.Load(out); err != nil {
		t.Fatal(err)
	}
}

// TestCompressFullRankRunsLikeInput checks the written file end to end in
// ONNX Runtime: at full rank without residual it computes what IN does.
func TestCompressFullRankRunsLikeInput(t *testing.T) {
	testutil.RequireORT(t)
	dir := t.TempDir()
	in := pointwiseModel(t, dir, 16)
	out := filepath.Join(dir, "full.onnx")
	if code, _, stderr := runCLI("compress", in, "-o", out, "--rank-ratio", "1", "--force", "--residual", "none"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rng := rand.New(rand.NewSource(1))
	x := make([]float32, 2*16*8*8)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	feed := map[string]ortrun.Tensor{"x": {Shape: []int64{2, 16, 8, 8}, Data: x}}
	a, err := ortrun.Run(in, feed, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ortrun.Run(out, feed, nil)
	if err != nil {
		t.Fatal(err)
	}
	var d, s float64
	for i, v := range a["out"].Data {
		d = math.Max(d, math.Abs(float64(v-b["out"].Data[i])))
		s = math.Max(s, math.Abs(float64(v)))
	}
	if d/s > 1e-4 {
		t.Fatalf("relative max-abs error %.3g", d/s)
	}
	testutil.CheckONNX(t, out)
}

// TestCompressPrecision compresses the MobileNetV1 fixture to fp16 and
// int8 and runs each file in ONNX Runtime next to the float32 output: the
// files pass onnx.checker, are smaller, and agree with the float32 model's
// top-1 class on the committed test images.
func TestCompressPrecision(t *testing.T) {
	testutil.RequireORT(t)
	dir := t.TempDir()
	model := testutil.Fixture(t, "mobilenetv1.onnx")
	images := filepath.Join(testutil.RepoRoot(t), "testdata", "images", "test")
	data := []string{"--data", filepath.Join(testutil.RepoRoot(t), "testdata", "images", "train"), "--mean", "0.286", "--std", "0.353", "--steps", "5", "--quant-samples", "64"}
	paths := map[string]string{}
	for _, prec := range []string{"fp32", "fp16", "int8"} {
		paths[prec] = filepath.Join(dir, prec+".onnx")
		args := append([]string{"compress", model, "-o", paths[prec], "--precision", prec, "--json"}, data...)
		code, stdout, stderr := runCLI(args...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", prec, code, stderr)
		}
		if prec != "fp32" && !strings.Contains(stdout, `"precision": "`+prec+`"`) {
			t.Errorf("%s: --json does not report the precision:\n%s", prec, stdout)
		}
		testutil.CheckONNX(t, paths[prec])
	}
	size := func(p string) int64 {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	if r := float64(size(paths["fp16"])) / float64(size(paths["fp32"])); r > 0.56 {
		t.Errorf("fp16 file is %.3f of the fp32 one, want about half", r)
	}
	if r := float64(size(paths["int8"])) / float64(size(model)); r > 0.30 {
		t.Errorf("int8 file is %.3f of the fp32 original's, want at most 0.30", r)
	}
	x, n := testImages(t, images, 200)
	ref := ortTop1(t, paths["fp32"], x, n)
	for _, prec := range []string{"fp16", "int8"} {
		got := ortTop1(t, paths[prec], x, n)
		agree := 0
		for i := range got {
			if got[i] == ref[i] {
				agree++
			}
		}
		min := map[string]int{"fp16": n - 1, "int8": n * 95 / 100}[prec]
		if agree < min {
			t.Errorf("%s agrees with fp32 on %d of %d images, want at least %d", prec, agree, n, min)
		}
	}
}

// testImages reads the first n images of the image folder dir, normalized
// as the fixtures were trained, as one NCHW batch of 3x32x32 samples.
func testImages(t *testing.T, dir string, n int) ([]float32, int) {
	t.Helper()
	src, err := dataset.Open(dir, dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	x, _, err := dataset.ReadAll(src, dataset.Preprocess{Channels: 3, Height: 32, Width: 32, Mean: []float32{0.286}, Std: []float32{0.353}})
	if err != nil {
		t.Fatal(err)
	}
	const per = 3 * 32 * 32
	n = min(n, len(x)/per)
	return x[:n*per], n
}

// ortTop1 runs the model at path in ONNX Runtime on n samples of x and
// returns each sample's top-1 class.
func ortTop1(t *testing.T, path string, x []float32, n int) []int {
	t.Helper()
	out, err := ortrun.Run(path, map[string]ortrun.Tensor{"input": {Shape: []int64{int64(n), 3, 32, 32}, Data: x}}, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(out) != 1 {
		t.Fatalf("%s: %d outputs, want 1", path, len(out))
	}
	var logits []float32
	for _, v := range out {
		logits = v.Data
	}
	classes := len(logits) / n
	top := make([]int, n)
	for i := range top {
		row := logits[i*classes : (i+1)*classes]
		for j, v := range row {
			if v > row[top[i]] {
				top[i] = j
			}
		}
	}
	return top
}

// TestCompressNoCandidates checks that a model without a square pointwise
// convolution (MobileNetV2's 1x1 layers all change width) gets a sentence
// saying why nothing is replaced instead of an empty layer table.
func TestCompressNoCandidates(t *testing.T) {
	dir := t.TempDir()
	m, err := onnxio.Load(pointwiseModel(t, dir, 16))
	if err != nil {
		t.Fatal(err)
	}
	w := make([]float32, 8*16)
	for i := range w {
		w[i] = float32(i%5) - 2
	}
	m.Graph.Initializer = []*onnxpb.TensorProto{onnxio.NewFloat32("w", []int64{8, 16, 1, 1}, w), onnxio.NewFloat32("b", []int64{8}, make([]float32, 8))}
	m.Graph.Output[0].GetType().GetTensorType().GetShape().Dim[1].Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 8}
	in := filepath.Join(dir, "narrow.onnx")
	if err := onnxio.Save(in, m, onnxio.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI("compress", in, "--dry-run", "--rank-ratio", "0.25")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"no candidates: ", "lprconv inspect", "replaced:  0 of 0"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "rel.err") {
		t.Errorf("output has an empty layer table:\n%s", stdout)
	}
}
