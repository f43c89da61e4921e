package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/torchexport"
)

const torchFixture = "../../testdata/models/mobilenetv1.onnx"

// TestExportImportTorchCLI exports the fixture, writes a weights file with
// one tensor changed (as distill.py would), imports it and checks the
// written model, then the command-line refusals.
func TestExportImportTorchCLI(t *testing.T) {
	dir := t.TempDir()
	pkg := filepath.Join(dir, "pkg")
	if code, _, errOut := runCLI("export-torch", torchFixture, "-o", pkg, "--fit", "pad", "--mean", "0.286", "--std", "0.353"); code != 0 {
		t.Fatalf("export-torch: exit %d: %s", code, errOut)
	}
	for _, f := range []string{"model.onnx", "model.py", "onnxops.py", "distill.py", "names.json", "README.md"} {
		if _, err := os.Stat(filepath.Join(pkg, f)); err != nil {
			t.Errorf("export-torch wrote no %s: %v", f, err)
		}
	}
	if code, _, errOut := runCLI("export-torch", torchFixture, "-o", pkg); code != 2 || !strings.Contains(errOut, "--overwrite") {
		t.Errorf("second export into %s: exit %d, %q; want a refusal naming --overwrite", pkg, code, errOut)
	}

	m, err := onnxio.Load(torchFixture)
	if err != nil {
		t.Fatal(err)
	}
	first := m.GetGraph().GetInitializer()[0]
	vals, err := onnxio.Float32s(first)
	if err != nil {
		t.Fatal(err)
	}
	for i := range vals {
		vals[i] *= 0.5
	}
	weights := filepath.Join(dir, "w.safetensors")
	w := &torchexport.Weights{Tensors: map[string]*torchexport.STensor{first.GetName(): {Shape: first.GetDims(), F: vals}}}
	if err := torchexport.WriteSafetensors(weights, w); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.onnx")
	code, stdout, errOut := runCLI("import-torch", weights, "--into", torchFixture, "-o", out, "--json")
	if code != 0 {
		t.Fatalf("import-torch: exit %d: %s", code, errOut)
	}
	var rep importTorchReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Tensors != 1 || rep.Probe {
		t.Fatalf("import-torch report %q: %+v, %v", stdout, rep, err)
	}
	// The default binary verifies in ONNX Runtime wherever its library is
	// found, and says why not elsewhere.
	testutil.RequireORT(t)
	if !rep.ORTVerified || rep.EngineORT == nil || !(*rep.EngineORT <= rep.Tolerance) {
		t.Errorf("import-torch did not verify in ONNX Runtime: %+v", rep)
	}
	out2 := filepath.Join(dir, "out2.onnx")
	code, stdout, errOut = runCLI("import-torch", weights, "--into", torchFixture, "-o", out2, "--json", "--ort-lib", filepath.Join(dir, "missing.so"))
	if code != 0 || !strings.Contains(stdout, "not verified in ONNX Runtime") {
		t.Errorf("import-torch with a missing --ort-lib: exit %d, %q, %q; want success with a note", code, stdout, errOut)
	}
	got, err := onnxio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	gv, err := onnxio.Float32s(got.GetGraph().GetInitializer()[0])
	if err != nil || !slices.Equal(gv, vals) {
		t.Errorf("imported tensor %q does not hold the weights file's values (%v)", first.GetName(), err)
	}

	zip := filepath.Join(dir, "checkpoint.pt")
	if err := os.WriteFile(zip, []byte("PK\x03\x04rest"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{weights, "--into", torchFixture, "-o", out}, "--overwrite"},
		{[]string{weights, "--into", torchFixture, "-o", torchFixture}, "never overwritten"},
		{[]string{weights, "-o", filepath.Join(dir, "x.onnx")}, "--into"},
		{[]string{zip, "--into", torchFixture, "-o", filepath.Join(dir, "y.onnx")}, "safetensors"},
	} {
		code, _, errOut := runCLI(append([]string{"import-torch"}, c.args...)...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("import-torch %v: exit %d, %q; want a failure mentioning %q", c.args, code, errOut, c.want)
		}
	}
}
