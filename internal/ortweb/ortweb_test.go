package ortweb

import (
	"math"
	"math/rand"
	"testing"

	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
)

// TestRunMatchesNative runs both fixtures in onnxruntime-web and in native
// ONNX Runtime on the same random inputs (in uneven batches, to exercise
// the chunking) and compares the logits.
func TestRunMatchesNative(t *testing.T) {
	testutil.RequireORT(t)
	if _, err := Dir(); err != nil {
		testutil.Skip(t, err.Error())
	}
	rng := rand.New(rand.NewSource(1))
	const n = 5
	x := make([]float32, n*3*32*32)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for _, name := range []string{"mobilenetv1.onnx", "shufflenetv2.onnx"} {
		path := testutil.Fixture(t, name)
		got, err := Run(path, x, []int{3, 32, 32}, 2)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != Version || got.Name != "logits" || len(got.Dims) != 2 || got.Dims[0] != n || got.Dims[1] != 10 {
			t.Fatalf("%s: version %q output %q dims %v, want %s logits [%d 10]", name, got.Version, got.Name, got.Dims, Version, n)
		}
		want, err := ortrun.Run(path, map[string]ortrun.Tensor{"input": {Shape: []int64{n, 3, 32, 32}, Data: x}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range want["logits"].Data {
			if d := math.Abs(float64(got.Data[i] - w)); d > 1e-4*(1+math.Abs(float64(w))) {
				t.Fatalf("%s: logit %d: wasm %g, native %g", name, i, got.Data[i], w)
			}
		}
	}
}

// TestRunErrors checks that bad inputs and models fail with an error.
func TestRunErrors(t *testing.T) {
	if _, err := Dir(); err != nil {
		testutil.Skip(t, err.Error())
	}
	path := testutil.Fixture(t, "mobilenetv1.onnx")
	cases := []struct {
		name   string
		model  string
		x      []float32
		sample []int
		batch  int
	}{
		{"partial sample", path, make([]float32, 100), []int{3, 32, 32}, 1},
		{"zero batch", path, make([]float32, 3*32*32), []int{3, 32, 32}, 0},
		{"missing model", path + ".missing", make([]float32, 3*32*32), []int{3, 32, 32}, 1},
		{"wrong shape", path, make([]float32, 3*16*16), []int{3, 16, 16}, 1},
	}
	for _, c := range cases {
		if _, err := Run(c.model, c.x, c.sample, c.batch); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}
