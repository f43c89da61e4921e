package torchexport

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
)

// conformanceRoot holds ONNX's per-operator test cases (Debian package
// libonnx-testdata).
const conformanceRoot = "/usr/share/libonnx-testdata/data/node"

// conformanceScript runs each generated module on its case's test data
// sets and prints one JSON object: case -> "" (pass) or the failure.
const conformanceScript = `
import glob, importlib.util, json, os, sys
import numpy as np, onnx, torch
from onnx import numpy_helper
torch.set_num_threads(1)
res = {}
def load(p):
    t = onnx.TensorProto()
    t.ParseFromString(open(p, "rb").read())
    return numpy_helper.to_array(t)
for job in json.load(open(sys.argv[1])):
    name = job["name"]
    try:
        spec = importlib.util.spec_from_file_location("case_" + name, job["module"])
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        m = mod.Model().eval()
        msg = ""
        for ds in sorted(glob.glob(os.path.join(job["dir"], "test_data_set_*"))):
            n_in = len(glob.glob(os.path.join(ds, "input_*.pb")))
            xs = [torch.from_numpy(np.array(load(os.path.join(ds, "input_%d.pb" % i)))) for i in range(n_in)]
            with torch.no_grad():
                ys = m(*xs)
            if not isinstance(ys, (tuple, list)):
                ys = (ys,)
            for i, y in enumerate(ys):
                want = load(os.path.join(ds, "output_%d.pb" % i))
                got = y.numpy()
                if got.shape != want.shape:
                    msg = "%s output %d: shape %s, want %s" % (os.path.basename(ds), i, got.shape, want.shape)
                elif got.dtype.kind != want.dtype.kind and not (got.dtype.kind in "iu" and want.dtype.kind in "iu"):
                    msg = "%s output %d: dtype %s, want %s" % (os.path.basename(ds), i, got.dtype, want.dtype)
                elif not np.allclose(got.astype(np.float64), want.astype(np.float64), rtol=1e-4, atol=1e-5):
                    msg = "%s output %d: max abs error %g" % (os.path.basename(ds), i, np.max(np.abs(got.astype(np.float64) - want)))
        res[name] = msg
    except Exception as e:
        res[name] = "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
print(json.dumps(res))
`

// TestConformance runs the generated module of every ONNX conformance node
// case whose operators Generate supports, in the forms it supports, and
// compares its outputs with the expected ones.
func TestConformance(t *testing.T) {
	testutil.RequirePythonTorch(t)
	dirs, err := filepath.Glob(filepath.Join(conformanceRoot, "test_*"))
	if err != nil || len(dirs) == 0 {
		testutil.Skipf(t, "no ONNX conformance cases in %s (install Debian's libonnx-testdata)", conformanceRoot)
	}
	type job struct {
		Name   string `json:"name"`
		Dir    string `json:"dir"`
		Module string `json:"module"`
	}
	var jobs []job
	refused := map[string]string{}
	tmp := t.TempDir()
	for _, dir := range dirs {
		name := filepath.Base(dir)
		m, err := onnxio.Load(filepath.Join(dir, "model.onnx"))
		if err != nil {
			continue
		}
		ok := true
		for _, n := range m.GetGraph().GetNode() {
			if emitters[n.GetOpType()] == nil {
				ok = false
			}
		}
		if !ok {
			continue
		}
		mod, err := Generate(m, GenOptions{ONNXFile: filepath.Join(dir, "model.onnx"), Origin: name})
		if err != nil {
			refused[name] = err.Error()
			continue
		}
		p := filepath.Join(tmp, name+".py")
		if err := os.WriteFile(p, mod.Source, 0o644); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, job{Name: name, Dir: dir, Module: p})
	}
	ops, err := pyFiles.ReadFile("py/onnxops.py")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "onnxops.py"), ops, 0o644); err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(jobs)
	specPath := filepath.Join(tmp, "jobs.json")
	if err := os.WriteFile(specPath, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testutil.Python, "-c", conformanceScript, specPath)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+tmp)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("conformance script: %v\n%s", err, out)
	}
	var res map[string]string
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("conformance script output: %v\n%s", err, out)
	}
	var names []string
	for n := range res {
		names = append(names, n)
	}
	sort.Strings(names)
	pass := 0
	for _, n := range names {
		if res[n] == "" {
			pass++
			continue
		}
		if why := expectedFailure(n); why != "" {
			t.Logf("%s: %s (expected: %s)", n, res[n], why)
			continue
		}
		t.Errorf("%s: %s", n, res[n])
	}
	for n, why := range refused {
		t.Logf("%s: refused at export: %s", n, why)
	}
	t.Logf("%d of %d conformance cases pass (%d refused at export)", pass, len(res), len(refused))
	if pass < 100 {
		t.Errorf("only %d conformance cases pass", pass)
	}
}

// expectedFailure explains the conformance cases the generated module is
// known not to reproduce, or returns "".
func expectedFailure(name string) string {
	for c, why := range map[string]string{
		"test_cast_BFLOAT16_to_FLOAT":              "numpy and torch.from_numpy have no bfloat16 (lprconv's engine refuses it too)",
		"test_cast_FLOAT_to_BFLOAT16":              "numpy has no bfloat16 to return the output in",
		"test_castlike_BFLOAT16_to_FLOAT_expanded": "numpy and torch.from_numpy have no bfloat16",
		"test_castlike_FLOAT_to_BFLOAT16_expanded": "numpy and torch.from_numpy have no bfloat16",
		"test_cast_FLOAT_to_STRING":                "torch has no string tensors",
		"test_cast_STRING_to_FLOAT":                "torch has no string tensors",
		"test_castlike_FLOAT_to_STRING_expanded":   "torch has no string tensors",
		"test_castlike_STRING_to_FLOAT_expanded":   "torch has no string tensors",
		"test_maxpool_2d_uint8":                    "torch has no uint8 max pooling (lprconv's engine refuses uint8 too)",
	} {
		if name == c {
			return why
		}
	}
	return ""
}
