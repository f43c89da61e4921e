package ortapi

import (
	"os"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
)

// BenchmarkRunTiny measures the per-run overhead of the binding on ONNX's
// test_relu model (60 values): Run copies in and out, Bound.Run reuses
// its inputs.
func BenchmarkRunTiny(b *testing.B) {
	const model = "/usr/share/libonnx-testdata/data/node/test_relu/model.onnx"
	if _, err := os.Stat(model); err != nil {
		testutil.Skipf(b, "%s missing (install Debian's libonnx-testdata)", model)
	}
	rt, err := Load(testutil.RequireORT(b))
	if err != nil {
		b.Fatal(err)
	}
	s, err := rt.NewSessionFromFile(model, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	in := map[string]Tensor{"x": {Shape: []int64{3, 4, 5}, Data: make([]float32, 60)}}
	b.Run("Run", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Run(in, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	bd, err := s.Bind(in)
	if err != nil {
		b.Fatal(err)
	}
	defer bd.Close()
	b.Run("Bound", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := bd.Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
