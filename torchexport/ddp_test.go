package torchexport

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/finetune"
	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// launcherOutput works around torch 1.13's launcher on Python 3.11, which
// fails to parse its default output options ("0").
var launcherOutput = []string{"--redirects", "0:1", "--tee", "0:1"}

// lprStudent returns the MobileNetV1 fixture and its data-free LPR
// student (rank ratio 1/4, diag residual).
func lprStudent(t *testing.T) (teacher, student *onnxpb.ModelProto) {
	t.Helper()
	m, err := onnxio.Load(testutil.Fixture(t, "mobilenetv1.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	kind, err := svd.ParseResidual("diag")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := convert.NewPlan(context.Background(), m, svd.Policy{Ratio: 0.25}, kind, convert.PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := convert.Apply(m, plan)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

// readLosses returns the per-step losses of a distill.py log.jsonl.
func readLosses(t *testing.T, path string) []float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var losses []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			Step int     `json:"step"`
			Loss float64 `json:"loss"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if e.Step != len(losses)+1 {
			t.Fatalf("%s: step %d after %d steps", path, e.Step, len(losses))
		}
		losses = append(losses, e.Loss)
	}
	return losses
}

func runPython(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(testutil.Python, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", testutil.Python, args, err, out)
	}
	t.Logf("%s", lastLines(string(out), 4))
}

// lastLines returns the last n non-empty lines of s.
func lastLines(s string, n int) string {
	lines := slices.DeleteFunc(strings.Split(s, "\n"), func(l string) bool { return l == "" })
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestDistillDDP runs the exported distill.py under torch.distributed.run
// with 2 CPU processes (gloo) on the committed images and checks the DDP
// goal: with a deterministic data order, 2 processes of batch B follow the
// loss curve of 1 process of batch 2B for the first 10 steps. The 2-process
// weights are then imported and verified against PyTorch's probe outputs in
// the engine and in ONNX Runtime, and only the LPR tensors have changed.
func TestDistillDDP(t *testing.T) {
	testutil.RequirePythonTorch(t)
	testutil.RequireORT(t)
	if err := ortrun.Init(); err != nil {
		t.Fatal(err)
	}
	teacher, student := lprStudent(t)
	dir := t.TempDir()
	if _, err := Export(dir, student, Options{Teacher: teacher, Origin: "mobilenetv1 LPR", TeacherOrigin: "mobilenetv1.onnx",
		Recipe: Recipe{Fit: "pad", Mean: "0.286", Std: "0.353"}}); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(testutil.RepoRoot(t), "testdata", "images", "train")
	const steps, batch = 10, 16
	common := []string{"--cpu", "--threads", "1", "--workers", "0", "--data", data, "--steps", "10",
		"--val-fraction", "0", "--seed", "3", "--log-every", "5"}
	ddp := append(append([]string{"-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"}, launcherOutput...),
		append([]string{"distill.py", "--backend", "gloo", "--batch", "16", "--out", "ddp"}, common...)...)
	runPython(t, dir, ddp...)
	runPython(t, dir, append([]string{"distill.py", "--batch", "32", "--out", "single"}, common...)...)
	// The same single-process run, interrupted after 4 steps and resumed.
	runPython(t, dir, append([]string{"distill.py", "--batch", "32", "--out", "resumed", "--stop-after", "4"}, common...)...)
	runPython(t, dir, append([]string{"distill.py", "--batch", "32", "--out", "resumed", "--resume"}, common...)...)

	two := readLosses(t, filepath.Join(dir, "ddp", "log.jsonl"))
	one := readLosses(t, filepath.Join(dir, "single", "log.jsonl"))
	if len(two) != steps || len(one) != steps {
		t.Fatalf("logged %d and %d steps, want %d", len(two), len(one), steps)
	}
	worst := 0.0
	for i := range one {
		rel := math.Abs(two[i]-one[i]) / math.Abs(one[i])
		worst = max(worst, rel)
		t.Logf("step %2d: 2 processes x batch %d loss %.7f, 1 process x batch %d loss %.7f, relative difference %.2g", i+1, batch, two[i], 2*batch, one[i], rel)
	}
	if !(worst <= 1e-4) {
		t.Errorf("2x%d and 1x%d loss curves differ by up to %.3g (relative); want <= 1e-4", batch, 2*batch, worst)
	}
	resumed := readLosses(t, filepath.Join(dir, "resumed", "log.jsonl"))
	if !slices.Equal(resumed, one) {
		t.Errorf("stopped after 4 steps and resumed, the run logged losses %v; uninterrupted %v", resumed, one)
	}
	checkSameWeights(t, filepath.Join(dir, "resumed", "weights.safetensors"), filepath.Join(dir, "single", "weights.safetensors"))
	if !(one[steps-1] < one[0]) {
		t.Errorf("the loss did not decrease over %d steps: %.5f -> %.5f", steps, one[0], one[steps-1])
	}

	w, err := ReadSafetensors(filepath.Join(dir, "ddp", "weights.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	tuned, names, err := Import(student, w)
	if err != nil {
		t.Fatal(err)
	}
	x, shape, want, err := ProbeOrRandom(tuned, w, 4)
	if err != nil || want == nil {
		t.Fatalf("probe: %v (outputs present: %v)", err, want != nil)
	}
	ye, err := RunEngine(tuned, x, shape, 1)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "tuned.onnx")
	if err := onnxio.Save(out, tuned, onnxio.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	yo := runORT(t, out, tuned, x, shape)
	eEng, eORT := RelMaxAbs(ye, want), RelMaxAbs(yo, want)
	t.Logf("imported %d tensors; probe outputs: engine vs torch %.3g, onnxruntime vs torch %.3g", len(names), eEng, eORT)
	if !(eEng <= 1e-5) || !(eORT <= 1e-5) {
		t.Errorf("imported model differs from PyTorch's trained student: engine %.3g, onnxruntime %.3g (want <= 1e-5)", eEng, eORT)
	}
	yBefore, err := RunEngine(student, x, shape, 1)
	if err != nil {
		t.Fatal(err)
	}
	if RelMaxAbs(yBefore, want) < 1e-3 {
		t.Errorf("the trained student's outputs equal the untrained one's: training changed nothing")
	}
	checkOnlyLPRChanged(t, student, tuned)
}

// checkOnlyLPRChanged checks that --train lpr left every non-LPR tensor
// bit for bit as it was, and changed the LPR ones.
func checkOnlyLPRChanged(t *testing.T, before, after *onnxpb.ModelProto) {
	t.Helper()
	lpr := map[string]bool{}
	for _, n := range finetune.TrainableTensors(before, finetune.TrainLPR) {
		lpr[n] = true
	}
	changed := 0
	for i, b := range before.GetGraph().GetInitializer() {
		a := after.GetGraph().GetInitializer()[i]
		if onnxio.DataType(b.GetDataType()) != onnxio.Float {
			continue
		}
		fb, err := onnxio.Float32s(b)
		if err != nil {
			t.Fatal(err)
		}
		fa, err := onnxio.Float32s(a)
		if err != nil {
			t.Fatal(err)
		}
		same := slices.Equal(fa, fb)
		switch {
		case !lpr[b.GetName()] && !same:
			t.Errorf("tensor %q is not an LPR tensor but changed", b.GetName())
		case lpr[b.GetName()] && !same:
			changed++
		}
	}
	if changed == 0 {
		t.Error("no LPR tensor changed")
	}
}

// checkSameWeights checks that two weights files hold the same tensors.
func checkSameWeights(t *testing.T, a, b string) {
	t.Helper()
	wa, err := ReadSafetensors(a)
	if err != nil {
		t.Fatal(err)
	}
	wb, err := ReadSafetensors(b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(wa.Names(), wb.Names()) {
		t.Fatalf("%s and %s hold different tensors", a, b)
	}
	for _, n := range wa.Names() {
		if !slices.Equal(wa.Tensors[n].F, wb.Tensors[n].F) {
			t.Errorf("tensor %q differs between %s and %s", n, a, b)
		}
	}
}
