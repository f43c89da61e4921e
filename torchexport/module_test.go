package torchexport

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/fastform"
	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/shapefold"
	"github.com/lprconv/lprconv/svd"
)

// runModulesScript loads each exported model.py (a job: folder, input file,
// shape, output file), runs it in eval mode without gradients on the input
// and writes the first output as little-endian float32.
const runModulesScript = `
import importlib.util, json, sys
import numpy as np, torch
torch.set_num_threads(1)
for i, job in enumerate(json.load(open(sys.argv[1]))):
    sys.path.insert(0, job["dir"])
    spec = importlib.util.spec_from_file_location("exported%d" % i, job["dir"] + "/model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.path.pop(0)
    m = mod.Model().eval()
    x = torch.from_numpy(np.fromfile(job["input"], dtype="<f4").reshape(job["shape"]))
    with torch.no_grad():
        y = m(x)
    y = y[0] if isinstance(y, (tuple, list)) else y
    y.numpy().astype("<f4").tofile(job["output"])
`

func writeF32(t *testing.T, path string, x []float32) {
	t.Helper()
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readF32(t *testing.T, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, len(b)/4)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return x
}

// modelCase is one model the generated module is checked on.
type modelCase struct {
	name, path string
}

func allModels(t *testing.T) []modelCase {
	var cases []modelCase
	for _, p := range testutil.Fixtures(t) {
		cases = append(cases, modelCase{filepath.Base(p), p})
	}
	if len(cases) < 6 {
		t.Fatalf("found %d fixtures in testdata/models; want the 6 MobileNetV1/ShuffleNetV2 variants", len(cases))
	}
	for _, n := range []string{"mobilenetv1_1.0.onnx", "mobilenetv2.onnx", "mobilenetv3_small.onnx", "shufflenetv2_x1.0.onnx"} {
		cases = append(cases, modelCase{"imagenet/" + n, testutil.ImageNetModel(t, n)})
	}
	cases = append(cases, modelCase{"imagenet/shufflenetv2_x1.0 as compress writes it", compressedShuffleNet(t, cases[len(cases)-1].path)})
	return cases
}

// compressedShuffleNet writes the model at path as data-free compress does
// (diag modules at ratio 1/4, multiple 16, channel alignment 4; shape
// arithmetic folded; every fastform rewrite: shuffles as one Concat, diag
// residuals folded, 58-channel branches padded) and returns the file.
func compressedShuffleNet(t *testing.T, path string) string {
	t.Helper()
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := convert.NewPlan(context.Background(), m, svd.Policy{Ratio: 0.25, Multiple: 16}, svd.KindDiag, convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4})
	if err != nil {
		t.Fatal(err)
	}
	rw, err := convert.Apply(m, plan)
	if err != nil {
		t.Fatal(err)
	}
	folded, _, err := shapefold.Fold(rw)
	if err != nil {
		t.Fatal(err)
	}
	f, rep, err := fastform.Rewrite(folded, fastform.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Shuffles == 0 || len(rep.DiagFolds) == 0 || len(rep.Padded) == 0 {
		t.Fatalf("fastform rewrote %s; want every kind of rewrite", rep)
	}
	out := filepath.Join(t.TempDir(), "shufflenetv2_x1.0_compressed.onnx")
	if err := onnxio.Save(out, f, onnxio.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestModuleMatchesORT is the generated-module goal: on every fixture and
// ImageNet-shaped model, model.py's output on seeded random inputs agrees
// with ONNX Runtime's to a relative max-abs error of at most 1e-5.
func TestModuleMatchesORT(t *testing.T) {
	testutil.RequireORT(t)
	testutil.RequirePythonTorch(t)
	if err := ortrun.Init(); err != nil {
		t.Fatal(err)
	}
	cases := allModels(t)
	tmp := t.TempDir()
	type job struct {
		Dir    string `json:"dir"`
		Input  string `json:"input"`
		Shape  []int  `json:"shape"`
		Output string `json:"output"`
	}
	jobs := make([]job, len(cases))
	inputs := make([][]float32, len(cases))
	for i, c := range cases {
		m, err := onnxio.Load(c.path)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(tmp, "m"+string(rune('a'+i)))
		if _, err := Export(dir, m, Options{Origin: c.path}); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		in, err := evaluate.ModelInput(m)
		if err != nil {
			t.Fatal(err)
		}
		batch := 2
		if in.Batch > 0 {
			batch = in.Batch
		}
		shape := []int{batch, in.Channels, in.Height, in.Width}
		r := rand.New(rand.NewPCG(uint64(i), 7))
		x := make([]float32, batch*in.Channels*in.Height*in.Width)
		for k := range x {
			x[k] = float32(r.NormFloat64())
		}
		inputs[i] = x
		jobs[i] = job{Dir: dir, Input: filepath.Join(dir, "x.f32"), Shape: shape, Output: filepath.Join(dir, "y.f32")}
		writeF32(t, jobs[i].Input, x)
	}
	spec, _ := json.Marshal(jobs)
	specPath := filepath.Join(tmp, "jobs.json")
	if err := os.WriteFile(specPath, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(testutil.Python, "-c", runModulesScript, specPath).CombinedOutput(); err != nil {
		t.Fatalf("running the generated modules: %v\n%s", err, out)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := onnxio.Load(c.path)
			if err != nil {
				t.Fatal(err)
			}
			want := runORT(t, c.path, m, inputs[i], jobs[i].Shape)
			got := readF32(t, jobs[i].Output)
			e := RelMaxAbs(got, want)
			t.Logf("%s: relative max-abs error of model.py against ONNX Runtime %.3g (%d outputs)", c.name, e, len(want))
			if !(e <= 1e-5) {
				t.Errorf("%s: relative max-abs error %.3g > 1e-5", c.name, e)
			}
		})
	}
}

// runORT runs the model file at path (graph m) in ONNX Runtime through
// internal/ortrun, which tests link whatever the build tags.
func runORT(t *testing.T, path string, m *onnxpb.ModelProto, x []float32, shape []int) []float32 {
	t.Helper()
	in, err := evaluate.ModelInput(m)
	if err != nil {
		t.Fatal(err)
	}
	dims := make([]int64, len(shape))
	for i, d := range shape {
		dims[i] = int64(d)
	}
	out, err := ortrun.Run(path, map[string]ortrun.Tensor{in.Name: {Shape: dims, Data: x}}, []string{in.Output})
	if err != nil {
		t.Fatalf("onnx runtime %s: %v", path, err)
	}
	return out[in.Output].Data
}

// TestEveryEngineOpHasEmitter keeps Generate in step with the engine: every
// operator the engine compiles can be exported.
func TestEveryEngineOpHasEmitter(t *testing.T) {
	var missing []string
	for _, op := range engine.SupportedOps() {
		if emitters[op] == nil {
			missing = append(missing, op)
		}
	}
	if len(missing) > 0 {
		t.Errorf("no export-torch emitter for engine operators %s", strings.Join(missing, ", "))
	}
}
