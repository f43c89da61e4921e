package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/finetune"
	"github.com/lprconv/lprconv/onnxio"
)

const fixtureTrain = "../../testdata/images/train"

func TestCompressFineTune(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "ft.onnx")
	ck := filepath.Join(dir, "ck")
	code, stdout, stderr := runCLI("compress", fixtureModel, "-o", out, "--data", fixtureTrain, "--mean", "0.286", "--std", "0.353",
		"--limit", "300", "--steps", "12", "--batch", "25", "--calib", "100", "--checkpoint", ck, "--checkpoint-every", "5", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r compressOutput
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, stdout)
	}
	ft := r.FineTune
	if ft == nil || ft.Report == nil || ft.Report.Steps != 12 || ft.TrainImages != 270 || ft.ValImages != 30 || len(ft.Layers) != r.Replaced || ft.Init != "data" {
		t.Fatalf("fine-tune summary %+v", ft)
	}
	for _, l := range ft.Layers {
		if l.Kept == "data" && l.DataAwareErr > l.DataFreeErr {
			t.Errorf("layer %s kept worse data-aware factors", l.Name)
		}
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ck, "checkpoint.lprc")); err != nil {
		t.Fatalf("no checkpoint: %v", err)
	}
	// The fine-tuned model follows the original more closely than the
	// data-free conversion does (90% agreement since channels are relabeled
	// for the diag residuals; 12 steps gain about 2 points on it: 1.8 with
	// calibration on 100 random training images, 2.0 on the first 100, of
	// four classes only).
	free := filepath.Join(dir, "free.onnx")
	if code, _, stderr := runCLI("compress", fixtureModel, "-o", free); code != 0 {
		t.Fatal(stderr)
	}
	agreement := func(p string) float64 {
		code, stdout, stderr := runCLI("compare", fixtureModel, p, "--data", fixtureImages, "--mean", "0.286", "--std", "0.353", "--json")
		if code != 0 {
			t.Fatal(stderr)
		}
		var c evaluate.Comparison
		if err := json.Unmarshal([]byte(stdout), &c); err != nil {
			t.Fatal(err)
		}
		return c.Agreement
	}
	if a, b := agreement(free), agreement(out); b < a+1 {
		t.Errorf("agreement with the original: data-free %.1f%%, fine-tuned %.1f%%", a, b)
	}
	// Rerunning the same command resumes from the finished checkpoint.
	code, _, stderr = runCLI("compress", fixtureModel, "-o", out, "--overwrite", "--data", fixtureTrain, "--mean", "0.286", "--std", "0.353",
		"--limit", "300", "--steps", "12", "--batch", "25", "--calib", "100", "--checkpoint", ck, "--checkpoint-every", "5")
	if code != 0 || !strings.Contains(stderr, "resuming from the checkpoint") {
		t.Fatalf("rerun: exit %d, stderr %s", code, stderr)
	}
}

func TestCompressFineTuneErrors(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "x.onnx")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--epochs", "2"}, "--epochs needs --data"},
		{[]string{"--data", fixtureTrain, "--loss", "hinge"}, "--loss"},
		{[]string{"--data", fixtureTrain, "--optimizer", "rmsprop"}, "--optimizer"},
		{[]string{"--data", fixtureTrain, "--train", "some"}, "--train"},
		{[]string{"--data", fixtureTrain, "--init", "random"}, "--init"},
		{[]string{"--data", fixtureTrain, "--val-fraction", "1"}, "--val-fraction"},
		{[]string{"--data", fixtureTrain, "--lr", "-1"}, "--lr"},
		{[]string{"--data", filepath.Join(dir, "nothing")}, "nothing"},
		{[]string{"--data", fixtureTrain, "--limit", "10", "--batch", "64"}, "fewer than one batch"},
	} {
		args := append([]string{"compress", fixtureModel, "-o", out}, tc.args...)
		code, _, stderr := runCLI(args...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want an error mentioning %q", tc.args, code, stderr, tc.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%v: output written despite the error", tc.args)
		}
	}
}

// TestCompressRecipe checks that --data alone gets the data-size recipe
// (finetune.RecipeFor): about 60,000 images' worth of steps, module
// matching, a reconstruction stage below 5,000 images and no hold-out on
// few images, reported in --json; that flags given explicitly override
// it; and that --steps replaces it.
func TestCompressRecipe(t *testing.T) {
	dir := t.TempDir()
	in := pointwiseModel(t, dir, 32)
	out := filepath.Join(dir, "out.onnx")
	base := []string{"compress", in, "-o", out, "--overwrite", "--rank-ratio", "0.25", "--multiple", "1", "--channel-align", "1",
		"--data", fixtureTrain, "--limit", "100", "--init", "weights", "--json"}
	decode := func(args ...string) compressOutput {
		t.Helper()
		code, stdout, stderr := runCLI(append(append([]string{}, base...), args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		var r compressOutput
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("bad JSON: %v\n%s", err, stdout)
		}
		if r.FineTune == nil || r.FineTune.Report == nil {
			t.Fatalf("%v: no fine-tuning report", args)
		}
		return r
	}
	r := decode()
	rec := r.FineTune.Recipe
	if rec == nil {
		t.Fatal("no recipe in --json")
	}
	want := finetune.RecipeFor(100)
	if rec.Images != 100 || rec.Steps != want.Steps || rec.Batch != 64 || rec.Match != "logits+modules" || rec.Augment != "none" || rec.Loss != "kd" || rec.Init != "" ||
		rec.ValFraction != 0 || rec.ReconstructSteps != want.ReconstructSteps || rec.ImagesProcessed > 60000 ||
		rec.RankLRRef != finetune.RecipeRankLRRef || rec.RankLRPower != finetune.RecipeRankLRPower || rec.ReconstructLRBoost != finetune.RecipeReconstructLRBoost {
		t.Errorf("recipe %+v, want the RecipeFor(100) schedule %+v", rec, want)
	}
	if got := r.FineTune.Report.Steps + r.FineTune.Reconstruct.Steps; got != rec.Steps {
		t.Errorf("ran %d distillation + %d reconstruction steps, recipe says %d", r.FineTune.Report.Steps, r.FineTune.Reconstruct.Steps, rec.Steps)
	}
	if r.FineTune.ValImages != 0 {
		t.Errorf("held out %d of 100 images; the recipe holds out none", r.FineTune.ValImages)
	}
	// The recipe weighs the module outputs' channels by the original's
	// Fisher information, on the calibration images in batches of 16.
	if w := r.FineTune.ChannelWeights; rec.Weigh != finetune.WeighFisher || w == nil || w.Method != finetune.WeighFisher || w.Values != 1 || w.Images != 96 {
		t.Errorf("recipe weigh %q, channel weights %+v; want fisher on 1 module output and 96 images (6 batches of 16)", rec.Weigh, w)
	}
	if r := decode("--channel-weights", "none"); r.FineTune.ChannelWeights != nil || r.FineTune.Recipe.Weigh != "" {
		t.Errorf("--channel-weights none: %+v, recipe %q", r.FineTune.ChannelWeights, r.FineTune.Recipe.Weigh)
	}
	if code, _, stderr := runCLI(append(append([]string{}, base...), "--channel-weights", "hessian")...); code == 0 || !strings.Contains(stderr, "--channel-weights") {
		t.Errorf("--channel-weights hessian: exit %d, %s", code, stderr)
	}

	// Explicit flags override the recipe's values and keep its compute.
	r = decode("--batch", "50", "--lr", "0.001", "--match", "logits", "--val-fraction", "0.2", "--loss", "kd+ce")
	rec = r.FineTune.Recipe
	if rec == nil || rec.Batch != 50 || rec.LR != 0.001 || rec.Match != "logits" || rec.ValFraction != 0.2 || rec.Steps != want.ImagesProcessed/50 || rec.Loss != "kd+ce" {
		t.Errorf("recipe with overrides %+v", rec)
	}
	if r.FineTune.ValImages != 20 {
		t.Errorf("--val-fraction 0.2 held out %d images, want 20", r.FineTune.ValImages)
	}

	// --steps replaces the recipe.
	r = decode("--steps", "3")
	if r.FineTune.Recipe != nil || r.FineTune.Reconstruct != nil || r.FineTune.Report.Steps != 3 || r.FineTune.ChannelWeights != nil {
		t.Errorf("--steps 3: recipe %+v, reconstruct %v, steps %d, channel weights %+v", r.FineTune.Recipe, r.FineTune.Reconstruct != nil, r.FineTune.Report.Steps, r.FineTune.ChannelWeights)
	}
	// Without the recipe, --channel-weights fisher weighs what --match matches.
	r = decode("--steps", "2", "--match", "logits+modules", "--channel-weights", "fisher")
	if w := r.FineTune.ChannelWeights; w == nil || w.Values != 1 {
		t.Errorf("--steps 2 --channel-weights fisher: %+v", w)
	}
}

// TestCompressRecipeModuleIsOutput checks that the recipe's channel
// weights leave alone a module whose output is the graph's output (there
// is nothing downstream to measure), instead of failing.
func TestCompressRecipeModuleIsOutput(t *testing.T) {
	dir := t.TempDir()
	m, err := onnxio.Load(pointwiseModel(t, dir, 32))
	if err != nil {
		t.Fatal(err)
	}
	m.Graph.Node = m.Graph.Node[:1] // the Conv alone
	m.Graph.Node[0].Output[0] = "out"
	in := filepath.Join(dir, "bare.onnx")
	if err := onnxio.Save(in, m, onnxio.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI("compress", in, "-o", filepath.Join(dir, "out.onnx"), "--rank-ratio", "0.25", "--multiple", "1", "--channel-align", "1",
		"--data", fixtureTrain, "--limit", "100", "--init", "weights", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r compressOutput
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	if r.FineTune == nil || r.FineTune.Recipe == nil || r.FineTune.ChannelWeights != nil {
		t.Errorf("fine-tune %+v: want the recipe without channel weights", r.FineTune)
	}
}
