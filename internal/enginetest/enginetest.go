// Package enginetest runs models in lprconv's engine for tests: fixed
// pseudo-random inputs for every graph input, one run, and the relative
// L2 distance that tests compare outputs with.
package enginetest

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Fill returns prod(shape) values uniform in [−1, 1), the same for the same
// seed.
func Fill(shape []int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	n := 1
	for _, d := range shape {
		n *= d
	}
	x := make([]float32, n)
	for i := range x {
		x[i] = r.Float32()*2 - 1
	}
	return x
}

// Run runs m on one thread at the given batch size, every graph input
// filled by Fill(shape, seed), and returns its outputs by name.
func Run(t testing.TB, m *onnxpb.ModelProto, batch int, seed uint64) map[string]*engine.Tensor {
	t.Helper()
	_, shapes := testutil.GraphInputs(m, batch)
	return RunShapes(t, m, shapes, seed)
}

// RunShapes runs m on one thread at the given input shapes, every graph
// input filled by Fill(shape, seed), and returns its outputs by name.
func RunShapes(t testing.TB, m *onnxpb.ModelProto, shapes map[string][]int, seed uint64) map[string]*engine.Tensor {
	t.Helper()
	in := map[string]*engine.Tensor{}
	for name, s := range shapes {
		in[name] = engine.NewTensorF(Fill(s, seed), s...)
	}
	return RunInputs(t, m, shapes, in)
}

// RunInputs compiles m on one thread for the given input shapes, runs it
// on in and returns its outputs by name.
func RunInputs(t testing.TB, m *onnxpb.ModelProto, shapes map[string][]int, in map[string]*engine.Tensor) map[string]*engine.Tensor {
	t.Helper()
	p, err := engine.Compile(m, engine.Options{InputShapes: shapes, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RelL2 returns ‖a − b‖₂ / ‖b‖₂ (with ‖b‖₂ floored at 1e-15).
func RelL2(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / max(den, 1e-30))
}
