package ortlatency

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
)

func TestOpenRun(t *testing.T) {
	m, err := New(testutil.RequireORT(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, path := range []string{
		"/usr/share/libonnx-testdata/data/node/test_conv_with_strides_padding/model.onnx",
		testutil.Fixture(t, "mobilenetv1.onnx"),
	} {
		r, err := m.Open(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for i := 0; i < 3; i++ {
			if err := r.Run(); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Open(filepath.Join(t.TempDir(), "missing.onnx")); err == nil {
		t.Error("a missing model should open with an error")
	}
	if _, err := New(filepath.Join(t.TempDir(), "missing.so"), 1); err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("a missing library: %v, want a one-line error", err)
	}
}

func TestInput(t *testing.T) {
	a, b, c := Input(1000, 0), Input(1000, 0), Input(1000, 1)
	same, lo, hi := true, float32(1), float32(-1)
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("Input is not deterministic")
		}
		if a[i] != c[i] {
			same = false
		}
		lo, hi = min(lo, a[i]), max(hi, a[i])
	}
	if same {
		t.Error("streams 0 and 1 give the same input")
	}
	if lo < -1 || hi >= 1 || lo > -0.9 || hi < 0.9 {
		t.Errorf("values span [%v, %v], want about [-1, 1)", lo, hi)
	}
}
