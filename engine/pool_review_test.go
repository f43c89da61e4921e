package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestGlobalAveragePoolReview checks GlobalAveragePool, whose planes are
// summed four at a time, bit for bit against the in-order float32 mean of
// each plane, for 1 to 7 planes (every remainder of four, and fewer planes
// than four) of 1 to 9 values, on random values and on planes of negative
// zeros, infinities and NaNs; and that it writes nothing past its output.
func TestGlobalAveragePoolReview(t *testing.T) {
	r := rand.New(rand.NewPCG(61, 62))
	inf := float32(math.Inf(1))
	specials := []float32{float32(math.Copysign(0, -1)), inf, -inf, float32(math.NaN()), 1e38, -1e38}
	for planes := 1; planes <= 7; planes++ {
		for inner := 1; inner <= 9; inner++ {
			for _, special := range []bool{false, true} {
				name := fmt.Sprintf("%d planes of %d special=%v", planes, inner, special)
				x := make([]float32, planes*inner)
				for i := range x {
					x[i] = float32(r.NormFloat64())
					if special && r.IntN(2) == 0 {
						x[i] = specials[r.IntN(len(specials))]
					}
				}
				if special { // one plane of negative zeros only
					for i := 0; i < inner; i++ {
						x[i] = float32(math.Copysign(0, -1))
					}
				}
				y := make([]float32, planes+3)
				for i := range y {
					y[i] = 42
				}
				op := &GlobalPoolOp{Planes: planes, Inner: inner}
				if err := op.Forward(nil, []*Tensor{{F: x}}, []*Tensor{{F: y}}); err != nil {
					t.Fatal(err)
				}
				for p := 0; p < planes; p++ {
					var s float32
					for _, v := range x[p*inner : (p+1)*inner] {
						s += v
					}
					want := s / float32(inner)
					if math.Float32bits(y[p]) != math.Float32bits(want) {
						t.Fatalf("%s: plane %d = %g, the in-order float32 mean is %g", name, p, y[p], want)
					}
				}
				for _, v := range y[planes:] {
					if v != 42 {
						t.Fatalf("%s: a value past the output was written", name)
					}
				}
			}
		}
	}
}
