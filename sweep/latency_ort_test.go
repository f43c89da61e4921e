//go:build ort

package sweep

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lprconv/lprconv/internal/testutil"
)

func TestORTLatencyMeter(t *testing.T) {
	testutil.RequireORT(t)
	m, err := NewLatencyMeter(LatencyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o := LatencyOptions{Warmup: 2, Runs: 5, Rounds: 2, MinTime: time.Millisecond}
	models := []string{"/usr/share/libonnx-testdata/data/node/test_conv_with_strides_padding/model.onnx"}
	if fx := filepath.Join(testutil.RepoRoot(t), "testdata", "models", "mobilenetv1.onnx"); fileExists(fx) {
		models = append(models, fx)
	}
	for _, path := range models {
		r, err := m.Open(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		ms, err := timeRunners([]LatencyRunner{r}, o.withDefaults(), time.Now)
		r.Close()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !(ms[0] > 0) || math.IsInf(ms[0], 0) {
			t.Errorf("%s: latency %v ms, want a positive finite value", path, ms[0])
		}
	}
	if _, err := m.Open(filepath.Join(t.TempDir(), "missing.onnx")); err == nil {
		t.Error("a missing model should fail")
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
