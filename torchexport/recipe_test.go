package torchexport

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/lprconv/lprconv/finetune"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
)

// recipeScript evaluates distill.py's loss and learning-rate schedule on
// the cases given as JSON and prints the results as JSON.
const recipeScript = `
import json, sys
sys.argv = sys.argv[:2]
sys.path.insert(0, sys.argv[1])
import distill, torch
cases = json.load(sys.stdin)
out = {"loss": [], "lr": []}
for c in cases["loss"]:
    s = torch.tensor(c["student"], dtype=torch.float32).reshape(-1, c["classes"])
    t = torch.tensor(c["teacher"], dtype=torch.float32).reshape(-1, c["classes"])
    y = torch.tensor(c["labels"], dtype=torch.int64)
    out["loss"].append(float(distill.distill_loss(s, t, y, c["kind"], c["temperature"], 0.5)))
for c in cases["lr"]:
    out["lr"].append(distill.lr_at(c["step"], c["peak"], c["warmup"], c["total"], c["min"]))
print(json.dumps(out))
`

// TestRecipeMatchesFinetune checks distill.py's loss and schedule against
// lprconv's own (finetune.Loss, finetune.Schedule) on the same values.
func TestRecipeMatchesFinetune(t *testing.T) {
	testutil.RequirePythonTorch(t)
	m, err := onnxio.Load(testutil.Fixture(t, "mobilenetv1.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := Export(dir, m, Options{}); err != nil {
		t.Fatal(err)
	}
	type lossCase struct {
		Kind        string    `json:"kind"`
		Temperature float64   `json:"temperature"`
		Classes     int       `json:"classes"`
		Student     []float32 `json:"student"`
		Teacher     []float32 `json:"teacher"`
		Labels      []int     `json:"labels"`
	}
	type lrCase struct {
		Step, Warmup, Total int
		Peak, Min           float64
	}
	r := rand.New(rand.NewPCG(5, 9))
	var losses []lossCase
	for _, kind := range []string{"kd", "kd+ce", "mse"} {
		for _, temp := range []float64{1, 2, 4} {
			c := lossCase{Kind: kind, Temperature: temp, Classes: 10, Labels: []int{3, -1, 9, 0}}
			for range 40 {
				c.Student = append(c.Student, float32(3*r.NormFloat64()))
				c.Teacher = append(c.Teacher, float32(3*r.NormFloat64()))
			}
			losses = append(losses, c)
		}
	}
	var lrs []map[string]any
	var sched []finetune.Schedule
	var steps []int
	for _, s := range []finetune.Schedule{{Peak: 2e-3, Warmup: 5, Total: 100}, {Peak: 1e-2, Warmup: 0, Total: 10, MinRatio: 0.1}, {Peak: 1e-3, Warmup: 10, Total: 10}} {
		for _, step := range []int{0, 1, 4, 5, 6, 50, 99, 100} {
			lrs = append(lrs, map[string]any{"step": step, "peak": s.Peak, "warmup": s.Warmup, "total": s.Total, "min": s.MinRatio})
			sched, steps = append(sched, s), append(steps, step)
		}
	}
	in, _ := json.Marshal(map[string]any{"loss": losses, "lr": lrs})
	cmd := exec.Command(testutil.Python, "-c", recipeScript, dir)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Dir = filepath.Dir(dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("recipe script: %v\n%s", err, out)
	}
	var got struct {
		Loss []float64 `json:"loss"`
		LR   []float64 `json:"lr"`
	}
	if err := json.Unmarshal(out, &got); err != nil || len(got.Loss) != len(losses) || len(got.LR) != len(lrs) {
		t.Fatalf("recipe script output %q: %v", out, err)
	}
	for i, c := range losses {
		kind, err := finetune.ParseLoss(c.Kind)
		if err != nil {
			t.Fatal(err)
		}
		l := finetune.Loss{Kind: kind, Temperature: c.Temperature}
		want, err := l.Eval(c.Student, c.Teacher, c.Labels, c.Classes, make([]float32, len(c.Student)))
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got.Loss[i]-want) > 1e-5*math.Max(1, math.Abs(want)) {
			t.Errorf("loss %s T=%g: distill.py %.7g, lprconv %.7g", c.Kind, c.Temperature, got.Loss[i], want)
		}
	}
	for i, s := range sched {
		if want := s.At(steps[i]); math.Abs(got.LR[i]-want) > 1e-12 {
			t.Errorf("lr at step %d of %+v: distill.py %g, lprconv %g", steps[i], s, got.LR[i], want)
		}
	}
}
