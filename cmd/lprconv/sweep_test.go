package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/report"
)

// sweepFixtureArgs sweeps the MobileNetV1 fixture at two ratios, measuring
// accuracy (and fidelity) on the 500 test PNGs.
func sweepFixtureArgs(t *testing.T, out string, extra ...string) []string {
	t.Helper()
	root := testutil.RepoRoot(t)
	args := []string{"sweep", testutil.Fixture(t, "mobilenetv1.onnx"), "--out", out,
		"--rank-ratios", "1/4,0.125", "--eval", filepath.Join(root, "testdata", "images", "test"),
		"--mean", "0.2860", "--std", "0.3530", "--batch", "100", "--threads", "2", "--no-latency"}
	return append(args, extra...)
}

func readSweepJSON(t *testing.T, path string) *report.Sweep {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := report.ReadJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func modTime(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.ModTime().UnixNano()
}

func TestSweepFixtureResumesAndParallel(t *testing.T) {
	out := filepath.Join(t.TempDir(), "sweep")
	code, stdout, stderr := runCLI(sweepFixtureArgs(t, out, "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	s, err := report.ReadJSON(strings.NewReader(stdout))
	if err != nil {
		t.Fatalf("stdout is not the sweep JSON: %v\n%s", err, stdout)
	}
	wantConfigs := []string{"diag_r0.25", "diag_r0.125"}
	var got []string
	for _, r := range s.Rows {
		got = append(got, r.Config)
	}
	if !reflect.DeepEqual(got, wantConfigs) {
		t.Fatalf("configurations %v, want %v", got, wantConfigs)
	}
	models := []string{"mobilenetv1_diag_r0.25.onnx", "mobilenetv1_diag_r0.125.onnx"}
	for _, name := range append([]string{"report.md", "results.csv", "results.json",
		report.PlotAccuracyParams, report.PlotAccuracyMACs, report.PlotSpectra,
		"state/diag_r0.25.json", "state/diag_r0.125.json"}, models...) {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("missing output: %v", err)
		}
	}
	// The original's accuracy on the test PNGs is the 92.6% recorded in
	// testdata/models/fixtures.json; compressed rows have accuracy, fewer
	// parameters and no latency (--no-latency).
	if a := s.Original.Accuracy; a == nil || *a < 0.924 || *a > 0.928 {
		t.Errorf("original accuracy %v, want 0.926", a)
	}
	for i, r := range s.Rows {
		if r.AccBefore == nil || r.AccAfter != nil || r.LatencyMs != nil {
			t.Errorf("row %s: acc before %v after %v latency %v", r.Config, r.AccBefore, r.AccAfter, r.LatencyMs)
		}
		if r.ParamsRatio >= 1 || len(r.Layers) == 0 || r.Agreement == nil || *r.Agreement < 0 || *r.Agreement > 1 {
			t.Errorf("row %s: params ratio %v, %d layers, agreement %v", r.Config, r.ParamsRatio, len(r.Layers), r.Agreement)
		}
		if r.Model != filepath.Join(out, models[i]) {
			t.Errorf("row %s: model %s", r.Config, r.Model)
		}
	}
	if s.Rows[1].Params >= s.Rows[0].Params {
		t.Errorf("rank 1/8 has %d params, rank 1/4 %d", s.Rows[1].Params, s.Rows[0].Params)
	}
	// results.json is what stdout showed; results.csv has the same rows.
	if file := readSweepJSON(t, filepath.Join(out, "results.json")); !reflect.DeepEqual(file, s) {
		t.Error("results.json differs from the JSON printed")
	}
	f, err := os.Open(filepath.Join(out, "results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(recs) != 3 || recs[1][0] != wantConfigs[0] || recs[2][0] != wantConfigs[1] {
		t.Errorf("results.csv: %v %v", recs, err)
	}
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	for _, want := range []string{"| diag_r0.25 | diag | 1/4 |", "![accuracy vs parameters](" + report.PlotAccuracyParams + ")", "Latency was not measured (--no-latency)."} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if !strings.Contains(stderr, "diag_r0.125 running") || !strings.Contains(stderr, "0 remaining") {
		t.Errorf("no progress lines on stderr:\n%s", stderr)
	}

	// A second run skips both configurations: nothing is rewritten.
	before := map[string]int64{}
	for _, name := range append(models, "state/diag_r0.25.json", "state/diag_r0.125.json") {
		before[name] = modTime(t, filepath.Join(out, name))
	}
	code, stdout, stderr = runCLI(sweepFixtureArgs(t, out)...)
	if code != 0 {
		t.Fatalf("second run: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "0 configurations run, 2 taken from an earlier run") {
		t.Errorf("second run did not skip:\n%s", stdout)
	}
	if strings.Count(stderr, "finished in an earlier run, skipped") != 2 || strings.Contains(stderr, "running") {
		t.Errorf("second run progress:\n%s", stderr)
	}
	for name, mt := range before {
		if modTime(t, filepath.Join(out, name)) != mt {
			t.Errorf("%s was rewritten by the second run", name)
		}
	}
	again := readSweepJSON(t, filepath.Join(out, "results.json"))
	if !reflect.DeepEqual(again.Rows, s.Rows) {
		t.Error("resumed rows differ from the first run's")
	}

	// --jobs 2 gives the same results as --jobs 1.
	out2 := filepath.Join(t.TempDir(), "sweep2")
	code, _, stderr = runCLI(sweepFixtureArgs(t, out2, "--jobs", "2")...)
	if code != 0 {
		t.Fatalf("--jobs 2: exit %d: %s", code, stderr)
	}
	par := readSweepJSON(t, filepath.Join(out2, "results.json"))
	for i := range par.Rows {
		par.Rows[i].Model = filepath.Join(out, filepath.Base(par.Rows[i].Model))
	}
	if !reflect.DeepEqual(par.Rows, s.Rows) || !reflect.DeepEqual(par.Original, s.Original) {
		t.Errorf("--jobs 2 rows differ:\n%+v\nwant\n%+v", par.Rows, s.Rows)
	}
}

func TestSweepUsageErrors(t *testing.T) {
	model := testutil.Fixture(t, "mobilenetv1.onnx")
	out := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sweep", model}, "--out"},
		{[]string{"sweep", "--out", out}, "one MODEL"},
		{[]string{"sweep", model, "--out", out, "--rank-ratios", "1/4,2"}, "at most 1"},
		{[]string{"sweep", model, "--out", out, "--rank-ratios", "a"}, "fraction"},
		{[]string{"sweep", model, "--out", out, "--residuals", "diag,square"}, "unknown residual"},
		{[]string{"sweep", model, "--out", out, "--residuals", "diag,diag"}, "twice"},
		{[]string{"sweep", model, "--out", out, "--jobs", "-1"}, "--jobs"},
		{[]string{"sweep", model, "--out", out, "--mean", "x"}, "--mean"},
		{[]string{"sweep", model, "--out", out, "--preset", "cifar"}, "--preset"},
		{[]string{"sweep", model, "--out", out, "--epochs", "1"}, "give --data"},
		{[]string{"sweep", model, "--out", out, "--lr", "0.1"}, "fine-tuning flag"},
		{[]string{"sweep", model, "--out", out, "--data", out, "--steps", "2", "--loss", "hinge"}, "--loss"},
		{[]string{"sweep", model, "--out", out, "--momentum", "0.5"}, "fine-tuning flag"},
		{[]string{"sweep", model, "--out", out, "--warmup", "3"}, "fine-tuning flag"},
		{[]string{"sweep", model, "--out", out, "--data", out, "--steps", "2", "--val-fraction", "1.5"}, "--val-fraction"},
		{[]string{"sweep", model, "--out", out, "--batch", "0"}, "--batch"},
		{[]string{"sweep", model, "--out", out, "--rank-ratios", "none"}, "give --rank-ratios, --budgets or both"},
		{[]string{"sweep", model, "--out", out, "--rank-ratios", ""}, "give --rank-ratios, --budgets or both"},
		{[]string{"sweep", model, "--out", out, "--budgets", "0.6,1.5"}, "--budgets"},
		{[]string{"sweep", model, "--out", out, "--budgets", "0.6,0.6"}, "twice"},
		{[]string{"sweep", model, "--out", out, "--precisions", "fp32,bf16"}, "--precisions: unknown precision \"bf16\""},
		{[]string{"sweep", model, "--out", out, "--precisions", "int8,int8"}, "--precisions: precision int8 is listed twice"},
		{[]string{"sweep", model, "--out", out, "--budget-samples", "8"}, "needs --budgets"},
		{[]string{"sweep", model, "--out", out, "--budgets", "latency=0.9", "--no-latency"}, "--budgets latency=0.9 is measured in ONNX Runtime; drop --no-latency"},
		{[]string{"sweep", model, "--out", out, "--budgets", "0.9", "--latency-batch", "64"}, "--latency-batch needs a latency=F item in --budgets"},
		{[]string{"sweep", model, "--out", out, "--budgets", "latency=0.9", "--latency-batch", "0"}, "--latency-batch"},
		{[]string{"sweep", model, "--out", out, "--budgets", "latency=0.9", "--latency-threads", "0"}, "--latency-threads 0 must be at least 1"},
		{[]string{"sweep", model, "--out", out, "--channel-align", "-1"}, "--channel-align"},
		{[]string{"sweep", model, "--out", out, "--shard", "0/0"}, "--shard: shard \"0/0\": the shard count N must be at least 1"},
		{[]string{"sweep", model, "--out", out, "--shard", "2/2"}, "--shard: shard \"2/2\": the shard index I must be in 0..1"},
		{[]string{"sweep", model, "--out", out, "--shard", "-1/2"}, "--shard: shard \"-1/2\": the shard index I must be in 0..1"},
		{[]string{"sweep", model, "--out", out, "--shard=a/b"}, "--shard: shard \"a/b\": want whole numbers I/N with N >= 1 and 0 <= I <= N-1"},
		{[]string{"sweep", model, "--out", out, "--shard", "0/2", "--json"}, "--report " + out + " --json"},
		{[]string{"sweep", model, "--out", out, "--lock-stale", "30s"}, "--lock-stale 30s must be at least 1m"},
		{[]string{"sweep", model, "--report", out}, "give no MODEL"},
		{[]string{"sweep", "--report", out, "--out", out}, "give no --out or --shard"},
	} {
		code, _, stderr := runCLI(c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
	code, _, stderr := runCLI("sweep", filepath.Join(out, "missing.onnx"), "--out", out)
	if code == 0 || !strings.Contains(stderr, "missing.onnx") {
		t.Errorf("missing model: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI("sweep", model, "--out", out, "--rank-ratios", "none", "--budgets", "latency=0.9",
		"--ort-lib", filepath.Join(out, "libonnxruntime.so"))
	if code == 0 || !strings.Contains(stderr, "--budgets latency=F needs ONNX Runtime (--ort-lib or ONNXRUNTIME_LIB)") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
		t.Errorf("latency budget without a runtime: exit %d, stderr %q", code, stderr)
	}
}

// TestSweepPrecisionsFlag: --precisions adds an int8 configuration after
// each fp32 one, with its own file and a precision column at the end of
// results.csv (int8 calibrated on the random fidelity inputs here).
func TestSweepPrecisionsFlag(t *testing.T) {
	out := filepath.Join(t.TempDir(), "sweep")
	code, _, stderr := runCLI("sweep", testutil.Fixture(t, "mobilenetv1.onnx"), "--out", out, "--rank-ratios", "1/4,1/8",
		"--residuals", "diag", "--random", "8", "--precisions", "fp32,int8", "--threads", "2", "--no-latency")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rows := csvRows(t, out)
	if len(rows) != 5 || rows[0][len(rows[0])-1] != "precision" {
		t.Fatalf("results.csv:\n%v\nwant a header ending in precision and 4 rows", rows)
	}
	for i, want := range [][2]string{{"diag_r0.25", ""}, {"diag_r0.25_int8", "int8"}, {"diag_r0.125", ""}, {"diag_r0.125_int8", "int8"}} {
		r := rows[i+1]
		if r[0] != want[0] || r[len(r)-1] != want[1] {
			t.Errorf("row %d: config %s precision %q, want %s %q", i, r[0], r[len(r)-1], want[0], want[1])
		}
		if _, err := os.Stat(filepath.Join(out, "mobilenetv1_"+want[0]+".onnx")); err != nil {
			t.Errorf("missing model: %v", err)
		}
	}
	s := readSweepJSON(t, filepath.Join(out, report.JSONFile))
	if notes := strings.Join(s.Meta.Notes, "\n"); !strings.Contains(notes, "int8 models are calibrated on 8 random standard-normal inputs") {
		t.Errorf("notes do not name the calibration inputs:\n%s", notes)
	}
}

// TestFineTuneFlagsShared: compress and sweep declare the one set of
// fine-tuning flags.
func TestFineTuneFlagsShared(t *testing.T) {
	for _, cmd := range []*cli.Command{compressCommand(), sweepCommand()} {
		have := map[string]bool{}
		for _, f := range cmd.Flags {
			have[f.Names()[0]] = true
		}
		for _, name := range finetuneFlagNames() {
			if !have[name] {
				t.Errorf("%s lacks --%s", cmd.Name, name)
			}
		}
	}
	want := []string{"epochs", "steps", "lr", "warmup", "optimizer", "momentum", "nesterov", "weight-decay", "loss",
		"temperature", "match", "channel-weights", "augment", "train", "val-fraction", "init", "calib", "data-seed"}
	if got := finetuneFlagNames(); !slices.Equal(got, want) {
		t.Errorf("fine-tuning flags %v, want %v", got, want)
	}
}

func TestSweepFineTunes(t *testing.T) {
	root := testutil.RepoRoot(t)
	out := filepath.Join(t.TempDir(), "ft")
	args := []string{"sweep", testutil.Fixture(t, "mobilenetv1.onnx"), "--out", out, "--rank-ratios", "1/8",
		"--eval", filepath.Join(root, "testdata", "images", "test"), "--data", filepath.Join(root, "testdata", "images", "train"),
		"--limit", "256", "--steps", "8", "--batch", "32", "--calib", "64", "--mean", "0.2860", "--std", "0.3530",
		"--threads", "2", "--no-latency", "--json"}
	code, stdout, stderr := runCLI(args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	s, err := report.ReadJSON(strings.NewReader(stdout))
	if err != nil {
		t.Fatal(err)
	}
	r := s.Rows[0]
	if r.AccBefore == nil || r.AccAfter == nil || *r.AccAfter <= *r.AccBefore {
		t.Errorf("accuracy before %v after %v: fine-tuning should raise it", r.AccBefore, r.AccAfter)
	}
	if !strings.Contains(stderr, "fine-tuning step 8 of 8") || !strings.Contains(stderr, "calibrating on 64 images") {
		t.Errorf("no fine-tuning progress on stderr:\n%s", stderr)
	}
	code, stdout, stderr = runCLI(args...)
	if code != 0 || strings.Contains(stderr, "fine-tuning step") {
		t.Errorf("second run: exit %d, trained again:\n%s", code, stderr)
	}
	again, err := report.ReadJSON(strings.NewReader(stdout))
	if err != nil || !reflect.DeepEqual(again.Rows, s.Rows) {
		t.Errorf("second run rows differ (%v)", err)
	}
}

// TestSweepBudgetsAndRatios sweeps the MobileNetV1 fixture at one rank
// ratio and one parameter budget: both rows, models and state files are
// written, the budget row meets its budget, and a second run skips both.
func TestSweepBudgetsAndRatios(t *testing.T) {
	out := filepath.Join(t.TempDir(), "sweep")
	args := []string{"sweep", testutil.Fixture(t, "mobilenetv1.onnx"), "--out", out, "--rank-ratios", "1/4", "--budgets", "0.65",
		"--random", "32", "--threads", "2", "--no-latency"}
	code, stdout, stderr := runCLI(append(args, "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	s, err := report.ReadJSON(strings.NewReader(stdout))
	if err != nil {
		t.Fatalf("stdout is not the sweep JSON: %v\n%s", err, stdout)
	}
	if len(s.Rows) != 2 {
		t.Fatalf("%d rows, want 2", len(s.Rows))
	}
	rows := map[string]report.Row{}
	for _, r := range s.Rows {
		rows[r.Config] = r
	}
	ratio, budget := rows["diag_r0.25"], rows["diag_b0.65"]
	if ratio.RankRatio != 0.25 || ratio.Budget != "" || len(ratio.Layers) == 0 {
		t.Errorf("ratio row: ratio %v budget %q, %d layers", ratio.RankRatio, ratio.Budget, len(ratio.Layers))
	}
	if budget.RankRatio != 0 || budget.Budget != "params=0.65" || len(budget.Layers) == 0 || budget.ParamsRatio > 0.65 {
		t.Errorf("budget row: ratio %v budget %q, %d layers, params ratio %v (want at most 0.65)",
			budget.RankRatio, budget.Budget, len(budget.Layers), budget.ParamsRatio)
	}
	// Rows of one residual are listed by decreasing size.
	if s.Rows[0].ParamsRatio < s.Rows[1].ParamsRatio {
		t.Errorf("rows not in decreasing order of parameters: %s %v, %s %v", s.Rows[0].Config, s.Rows[0].ParamsRatio, s.Rows[1].Config, s.Rows[1].ParamsRatio)
	}
	files := []string{"mobilenetv1_diag_r0.25.onnx", "mobilenetv1_diag_b0.65.onnx", "state/diag_r0.25.json", "state/diag_b0.65.json"}
	before := map[string]int64{}
	for _, name := range files {
		before[name] = modTime(t, filepath.Join(out, name))
	}
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	for _, want := range []string{"| budget |", "| diag_b0.65 | diag | ", "| params=0.65 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if !strings.Contains(stderr, "measuring per-layer sensitivity (weights)") {
		t.Errorf("no sensitivity progress on stderr:\n%s", stderr)
	}

	code, stdout, stderr = runCLI(args...)
	if code != 0 {
		t.Fatalf("second run: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "0 configurations run, 2 taken from an earlier run") || strings.Contains(stderr, "sensitivity") {
		t.Errorf("second run did not skip:\n%s\n%s", stdout, stderr)
	}
	for name, mt := range before {
		if modTime(t, filepath.Join(out, name)) != mt {
			t.Errorf("%s was rewritten by the second run", name)
		}
	}
	if again := readSweepJSON(t, filepath.Join(out, "results.json")); !reflect.DeepEqual(again.Rows, s.Rows) {
		t.Error("resumed rows differ from the first run's")
	}

	// --rank-ratios none sweeps budgets only; MAC budgets are named bmacs.
	out2 := filepath.Join(t.TempDir(), "budgets")
	code, stdout, stderr = runCLI("sweep", testutil.Fixture(t, "mobilenetv1.onnx"), "--out", out2, "--rank-ratios", "none",
		"--budgets", "macs=0.8", "--random", "8", "--threads", "2", "--no-latency", "--json")
	if code != 0 {
		t.Fatalf("budgets only: exit %d: %s", code, stderr)
	}
	s2, err := report.ReadJSON(strings.NewReader(stdout))
	if err != nil {
		t.Fatal(err)
	}
	if len(s2.Rows) != 1 || s2.Rows[0].Config != "diag_bmacs0.8" || s2.Rows[0].MACsRatio > 0.8 {
		t.Errorf("budgets only: rows %+v", s2.Rows)
	}
	if _, err := os.Stat(filepath.Join(out2, "mobilenetv1_diag_bmacs0.8.onnx")); err != nil {
		t.Error(err)
	}
}

// TestSweepIncludeNonSquareMobileNetV2 sweeps the ImageNet-shaped
// MobileNetV2, which has no square pointwise layer: with
// --include-nonsquare its expand/project layers get spectra over
// min(C_in, C_out) singular values and are replaced.
func TestSweepIncludeNonSquareMobileNetV2(t *testing.T) {
	in := testutil.ImageNetModel(t, "mobilenetv2.onnx")
	m, err := onnxio.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	cands, err := convert.FindCandidatesWith(m, convert.ShapeOptions{}, convert.CandidateOptions{NonSquare: true})
	if err != nil {
		t.Fatal(err)
	}
	minC := map[string]int{}
	for _, c := range cands {
		minC[c.Name] = min(c.Channels, c.InputChannels())
	}
	out := filepath.Join(t.TempDir(), "v2")
	code, stdout, stderr := runCLI("sweep", in, "--out", out, "--include-nonsquare", "--rank-ratios", "1/4",
		"--random", "2", "--batch", "2", "--threads", "2", "--no-latency", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	s, err := report.ReadJSON(strings.NewReader(stdout))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Spectra) != len(cands) || len(cands) < 30 {
		t.Errorf("%d spectra for %d non-square candidates", len(s.Spectra), len(cands))
	}
	for _, sp := range s.Spectra {
		if sp.C != minC[sp.Name] || len(sp.Singular) != sp.C {
			t.Errorf("%s: C=%d with %d singular values, want min(C_in, C_out) = %d", sp.Name, sp.C, len(sp.Singular), minC[sp.Name])
		}
	}
	r := s.Rows[0]
	if len(r.Layers) < len(cands)/2 || r.ParamsRatio >= 0.9 {
		t.Errorf("%d of %d layers replaced, params ratio %v", len(r.Layers), len(cands), r.ParamsRatio)
	}
	for _, l := range r.Layers {
		// ceil(min/4) rounded up to the default multiple 16.
		if want := (minC[l.Name]/4 + 15) / 16 * 16; l.Rank != want {
			t.Errorf("%s: rank %d, want %d", l.Name, l.Rank, want)
		}
	}
}

// shardArgs sweeps the MobileNetV1 fixture data-free on 8 random inputs:
// residuals diag and none at ranks 1/4 and 1/8.
func shardArgs(t *testing.T, out string, extra ...string) []string {
	t.Helper()
	args := []string{"sweep", testutil.Fixture(t, "mobilenetv1.onnx"), "--out", out, "--random", "8",
		"--rank-ratios", "1/4,1/8", "--residuals", "diag,none", "--batch", "8", "--threads", "1", "--no-latency"}
	return append(args, extra...)
}

// csvRows reads results.csv with the model column reduced to its base
// name, so that sweeps in different folders compare.
func csvRows(t *testing.T, dir string) [][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, report.CSVFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	model := slices.Index(recs[0], "model")
	if model < 0 {
		t.Fatalf("results.csv header %v has no model column", recs[0])
	}
	for _, r := range recs[1:] {
		r[model] = filepath.Base(r[model])
	}
	return recs
}

// TestSweepShardsMatchWholeSweep: --shard 0/2 and --shard 1/2 run at once
// on one folder, then --report, give the results.csv rows of one
// unsharded sweep; --report of one finished shard reports its rows and
// names the others.
func TestSweepShardsMatchWholeSweep(t *testing.T) {
	whole := filepath.Join(t.TempDir(), "whole")
	if code, _, stderr := runCLI(shardArgs(t, whole)...); code != 0 {
		t.Fatalf("unsharded sweep: exit %d: %s", code, stderr)
	}
	want := csvRows(t, whole)
	if len(want) != 5 {
		t.Fatalf("unsharded results.csv has %d lines, want 5", len(want))
	}

	// The two shards are two processes (this test binary re-run as
	// lprconv, see TestSweepHelperProcess) started at the same time.
	shared := filepath.Join(t.TempDir(), "shared")
	var procs [2]*exec.Cmd
	var outs, errs [2]bytes.Buffer
	for i := range procs {
		args, err := json.Marshal(shardArgs(t, shared, "--shard", fmt.Sprintf("%d/2", i)))
		if err != nil {
			t.Fatal(err)
		}
		procs[i] = exec.Command(os.Args[0], "-test.run=^TestSweepHelperProcess$")
		procs[i].Env = append(os.Environ(), helperArgsEnv+"="+string(args))
		procs[i].Stdout, procs[i].Stderr = &outs[i], &errs[i]
		if err := procs[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range procs {
		if err := p.Wait(); err != nil {
			t.Fatalf("--shard %d/2: %v: %s", i, err, errs[i].String())
		}
		if stdout := outs[i].String(); !strings.Contains(stdout, fmt.Sprintf("shard %d/2: 2 configurations run", i)) ||
			!strings.Contains(stdout, "lprconv sweep --report "+shared) {
			t.Errorf("--shard %d/2 output:\n%s", i, stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(shared, report.CSVFile)); err == nil {
		t.Error("a shard wrote results.csv")
	}
	code, stdout, stderr := runCLI("sweep", "--report", shared)
	if code != 0 {
		t.Fatalf("--report: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "report of 4 of 4 configurations written to "+shared) {
		t.Errorf("--report output:\n%s", stdout)
	}
	if got := csvRows(t, shared); !reflect.DeepEqual(got, want) {
		t.Errorf("sharded results.csv:\n%v\nwant\n%v", got, want)
	}
	s := readSweepJSON(t, filepath.Join(shared, report.JSONFile))
	if strings.Contains(s.Meta.Command, "--shard") || !strings.Contains(s.Meta.Command, "--rank-ratios 1/4,1/8") {
		t.Errorf("report command %q: want the whole sweep's command", s.Meta.Command)
	}

	// One shard alone: --report builds the report of its rows.
	partial := filepath.Join(t.TempDir(), "partial")
	if code, _, stderr := runCLI(shardArgs(t, partial, "--shard", "1/2")...); code != 0 {
		t.Fatalf("--shard 1/2: exit %d: %s", code, stderr)
	}
	code, stdout, stderr = runCLI("sweep", "--report", partial, "--json")
	if code != 0 {
		t.Fatalf("--report of a partial sweep: exit %d: %s", code, stderr)
	}
	ps, err := report.ReadJSON(strings.NewReader(stdout))
	if err != nil {
		t.Fatalf("--report --json: %v\n%s", err, stdout)
	}
	if got := csvRows(t, partial); !reflect.DeepEqual(got, append([][]string{want[0]}, want[3:]...)) {
		t.Errorf("partial results.csv:\n%v\nwant the last two rows of\n%v", got, want)
	}
	if notes := strings.Join(ps.Meta.Notes, "\n"); !strings.Contains(notes, "Not finished yet: diag_r0.25, diag_r0.125.") {
		t.Errorf("partial report notes:\n%s", notes)
	}
}

// helperArgsEnv holds the JSON-encoded command line that
// TestSweepHelperProcess runs.
const helperArgsEnv = "LPRCONV_TEST_HELPER_ARGS"

// TestSweepHelperProcess is not a test: run by TestSweepShardsMatchWholeSweep
// as a child process with helperArgsEnv set, it is lprconv with those
// arguments and exits with its code. Without the variable it returns at
// once.
func TestSweepHelperProcess(t *testing.T) {
	enc := os.Getenv(helperArgsEnv)
	if enc == "" {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(enc), &args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(run(append([]string{"lprconv"}, args...), os.Stdout, os.Stderr))
}
