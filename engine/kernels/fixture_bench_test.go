package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// fixturePW are the pointwise convolutions of the 32x32 MobileNetV1-0.25
// fixture: Cout, Cin, H*W (run at batch 64).
var fixturePW = [][3]int{
	{16, 8, 256}, {32, 16, 64}, {32, 32, 64}, {64, 32, 16}, {64, 64, 16},
	{128, 64, 4}, {128, 128, 4}, {256, 128, 1}, {256, 256, 1},
}

// BenchmarkFixtureGemm runs the forward (Y = W X), input-gradient
// (dX = Wᵀ dY) and weight-gradient (dW = sum dY Xᵀ) products of the fixture's
// pointwise layers at batch 64 as the engine issues them.
func BenchmarkFixtureGemm(b *testing.B) {
	const n = 64
	for _, s := range fixturePW {
		co, ci, hw := s[0], s[1], s[2]
		r := rand.New(rand.NewPCG(1, 2))
		w, x, y := randSlice(r, co*ci), randSlice(r, n*ci*hw), randSlice(r, n*co*hw)
		dx, dw := make([]float32, n*ci*hw), make([]float32, co*ci)
		for _, pass := range []string{"fwd", "dx", "dw"} {
			b.Run(fmt.Sprintf("t1/%s/%dx%dx%d", pass, co, ci, hw), func(b *testing.B) {
				ctx := NewContext(1)
				benchFLOPs(b, processCPUTime, 2*float64(n*co*ci*hw), func() {
					switch pass {
					case "fwd":
						ctx.SgemmBatched(false, false, co, hw, ci, 1, w, ci, 0, x, hw, ci*hw, 0, y, hw, co*hw, n)
					case "dx":
						ctx.SgemmBatched(true, false, ci, hw, co, 1, w, ci, 0, y, hw, co*hw, 0, dx, hw, ci*hw, n)
					case "dw":
						ctx.SgemmBatched(false, true, co, ci, hw, 1, y, hw, co*hw, x, hw, ci*hw, 0, dw, ci, 0, n)
					}
				})
			})
		}
	}
}
