// Package testutil holds helpers shared by lprconv's tests: locating the
// repository, its fixtures and cached models, and the optional external
// references (ONNX Runtime, Python's onnx checker).
//
// Optional references are skipped with a message in a developer's run and are
// fatal when the environment variable CI is set (as .ci/run does), so that a
// CI run can never pass by skipping.
package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lprconv/lprconv/internal/ortrun/libpath"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// InCI reports whether the environment variable CI is set to any
// non-empty value (CI services set it to "true", .ci/run to "1").
func InCI() bool {
	return os.Getenv("CI") != ""
}

// Skip is the one way a test of lprconv skips: outside CI it skips with
// msg, and when CI is set (InCI) it fails the test with msg instead, so that
// a CI run can never pass by skipping. Every skip in the project's tests
// goes through it.
func Skip(t testing.TB, msg string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s (CI is set, so this is an error rather than a skip)", msg)
	}
	t.Skipf("%s; skipping (set CI=1 to make this fatal)", msg)
}

// Skipf is Skip with a format string.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	Skip(t, fmt.Sprintf(format, args...))
}

// missing is Skip for a missing reference.
func missing(t testing.TB, msg string) {
	t.Helper()
	Skip(t, msg)
}

// RequireORT returns the path of the ONNX Runtime shared library, skipping
// the test when it is not installed (failing it when CI is set).
func RequireORT(t testing.TB) string {
	t.Helper()
	p, err := libpath.Find()
	if err != nil {
		missing(t, err.Error())
	}
	return p
}

// Python is the interpreter that has Debian's python3-onnx; the python3 on
// PATH may be a different one.
const Python = "/usr/bin/python3"

// pythonModules checks once per test binary that /usr/bin/python3 can
// import a set of modules.
type pythonModules struct {
	once     sync.Once
	err      error
	imports  string // the import statement's module list
	packages string // the Debian packages that provide them
}

func (p *pythonModules) check() error {
	p.once.Do(func() {
		out, err := exec.Command(Python, "-c", "import "+p.imports).CombinedOutput()
		if err != nil {
			p.err = errors.New(Python + " cannot import " + p.imports + " (install Debian's " + p.packages + "): " + strings.TrimSpace(string(out)) + " " + err.Error())
		}
	})
	return p.err
}

var (
	pythonONNX  = &pythonModules{imports: "onnx", packages: "python3-onnx"}
	pythonTorch = &pythonModules{imports: "torch, onnx, numpy", packages: "python3-torch and python3-onnx"}
)

// PythonONNX reports whether /usr/bin/python3 can import onnx (checked once
// per test binary), with the reason when it cannot.
func PythonONNX() error { return pythonONNX.check() }

// RequirePythonONNX skips the test when /usr/bin/python3 cannot import onnx
// (fails it when CI is set).
func RequirePythonONNX(t testing.TB) {
	t.Helper()
	if err := PythonONNX(); err != nil {
		missing(t, err.Error())
	}
}

// PythonTorch reports whether /usr/bin/python3 can import torch, onnx and
// numpy (Debian's python3-torch and python3-onnx; checked once per test
// binary), with the reason when it cannot.
func PythonTorch() error { return pythonTorch.check() }

// RequirePythonTorch skips the test when /usr/bin/python3 cannot import
// torch, onnx and numpy (fails it when CI is set).
func RequirePythonTorch(t testing.TB) {
	t.Helper()
	if err := PythonTorch(); err != nil {
		missing(t, err.Error())
	}
}

// checkScript loads the model (with external data from its folder) and runs
// the full ONNX checker, including shape inference.
const checkScript = "import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)"

// CheckONNX runs ONNX's own checker (onnx.checker.check_model with
// full_check) on the model at path and fails the test with the checker's
// message when it rejects the model.
func CheckONNX(t testing.TB, path string) {
	t.Helper()
	RequirePythonONNX(t)
	out, err := exec.Command(Python, "-c", checkScript, path).CombinedOutput()
	if err != nil {
		t.Fatalf("onnx.checker rejects %s: %v\n%s", path, err, out)
	}
}

// checkAllScript runs the full checker on every model named on its command
// line, printing each rejection, and fails if any is rejected.
const checkAllScript = "import onnx,sys\nbad = False\nfor p in sys.argv[1:]:\n    try:\n        onnx.checker.check_model(onnx.load(p), full_check=True)\n    except Exception as e:\n        print(p + \": \" + str(e)); bad = True\nsys.exit(1 if bad else 0)"

// CheckONNXAll is CheckONNX for every model in paths, in one Python
// process; it reports every rejected model and lets the test go on.
func CheckONNXAll(t testing.TB, paths []string) {
	t.Helper()
	if len(paths) == 0 {
		return
	}
	RequirePythonONNX(t)
	if out, err := exec.Command(Python, append([]string{"-c", checkAllScript}, paths...)...).CombinedOutput(); err != nil {
		t.Errorf("onnx.checker rejects a model: %v\n%s", err, out)
	}
}

// RepoRoot returns the repository root: the nearest folder above the
// working directory that holds go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("repository root: %v", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("repository root: no go.mod above %s", dir)
		}
	}
}

// Fixture returns the path of testdata/models/<name> and fails the test when
// the file is missing (fixtures are committed, so a missing one is a bug).
func Fixture(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(RepoRoot(t), "testdata", "models", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("fixture %s: %v (fixtures live in testdata/models; regenerate them with the scripts in testdata/gen)", name, err)
	}
	return p
}

// Fixtures returns the paths of every testdata/models/*.onnx file, sorted.
func Fixtures(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(RepoRoot(t), "testdata", "models", "*.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// CacheDir returns ${XDG_CACHE_HOME:-$HOME/.cache}/lprconv, where .ci/run
// keeps downloaded and generated files that do not belong in the
// repository.
func CacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "lprconv")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "lprconv")
}

// ImageNetDirs returns the folders searched for ImageNet-shaped models, in
// order: CacheDir()/imagenet, then /root/.cache/lprconv/imagenet.
func ImageNetDirs() []string {
	dirs := []string{filepath.Join(CacheDir(), "imagenet")}
	if d := "/root/.cache/lprconv/imagenet"; d != dirs[0] {
		dirs = append(dirs, d)
	}
	return dirs
}

// ImageNetModel returns the path of the ImageNet-shaped model name (e.g.
// "mobilenetv1.onnx") generated by testdata/gen/export_imagenet.py into the
// cache. When it is missing the test is skipped (fails when CI is set; .ci/run
// generates the models).
func ImageNetModel(t testing.TB, name string) string {
	t.Helper()
	dirs := ImageNetDirs()
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	missing(t, "ImageNet-shaped model "+name+" not found in "+strings.Join(dirs, " or ")+"; generate it with `bash .ci/run` or `/usr/bin/python3 testdata/gen/export_imagenet.py --out "+dirs[0]+"`")
	return ""
}

// GraphInputs returns the names of m's graph inputs that are not
// initializers, in graph order, and their shapes with every dynamic
// dimension set to batch (fixed dimensions stay).
func GraphInputs(m *onnxpb.ModelProto, batch int) ([]string, map[string][]int) {
	inits := map[string]bool{}
	for _, tp := range m.GetGraph().GetInitializer() {
		inits[tp.GetName()] = true
	}
	var names []string
	shapes := map[string][]int{}
	for _, in := range m.GetGraph().GetInput() {
		if inits[in.GetName()] {
			continue
		}
		var shape []int
		for _, d := range in.GetType().GetTensorType().GetShape().GetDim() {
			v := int(d.GetDimValue())
			if _, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); !ok {
				v = batch
			}
			shape = append(shape, v)
		}
		names = append(names, in.GetName())
		shapes[in.GetName()] = shape
	}
	return names, shapes
}

// Int64s converts dims to the int64 dimensions runtimes take.
func Int64s(dims []int) []int64 {
	out := make([]int64, len(dims))
	for i, d := range dims {
		out[i] = int64(d)
	}
	return out
}

// OpCount counts the nodes of one operator type in m's main graph.
func OpCount(m *onnxpb.ModelProto, op string) int {
	n := 0
	for _, nd := range m.GetGraph().GetNode() {
		if nd.GetOpType() == op {
			n++
		}
	}
	return n
}
