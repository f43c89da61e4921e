package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestGlobalAveragePoolBits checks GlobalAveragePool against the mean of
// each plane summed in order in float32 (the bits the planes summed four
// at a time must keep) and against the float64 mean, for plane counts
// with and without a partial group of four.
func TestGlobalAveragePoolBits(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct{ planes, inner int }{{1, 49}, {3, 5}, {4, 49}, {7, 2}, {1024, 49}, {9, 196}, {5, 1}} {
		t.Run(fmt.Sprintf("%dx%d", c.planes, c.inner), func(t *testing.T) {
			x := make([]float32, c.planes*c.inner)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			y := make([]float32, c.planes)
			op := &GlobalPoolOp{Planes: c.planes, Inner: c.inner}
			if err := op.Forward(nil, []*Tensor{{F: x}}, []*Tensor{{F: y}}); err != nil {
				t.Fatal(err)
			}
			for p := range y {
				var s float32
				var s64, mag float64
				for _, v := range x[p*c.inner : (p+1)*c.inner] {
					s += v
					s64 += float64(v)
					mag += math.Abs(float64(v))
				}
				want := s / float32(c.inner)
				if math.Float32bits(y[p]) != math.Float32bits(want) {
					t.Fatalf("plane %d: %g, the in-order float32 mean is %g", p, y[p], want)
				}
				if d := math.Abs(float64(y[p]) - s64/float64(c.inner)); d > 1e-6*mag/float64(c.inner)+1e-7 {
					t.Fatalf("plane %d: %g, the float64 mean is %g", p, y[p], s64/float64(c.inner))
				}
			}
		})
	}
}
