package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// maxPoolRef is the scalar 3x3 max pooling of one plane, with Go's max.
func maxPoolRef(g *ConvGeom, in, out []float32) {
	for oy := 0; oy < g.OH; oy++ {
		for ox := 0; ox < g.OW; ox++ {
			m := float32(math.Inf(-1))
			for ky := 0; ky < 3; ky++ {
				for kx := 0; kx < 3; kx++ {
					iy, ix := oy*g.Strides[0]-g.Pads[0]+ky, ox*g.Strides[1]-g.Pads[1]+kx
					if iy >= 0 && iy < g.H && ix >= 0 && ix < g.W {
						m = max(m, in[iy*g.W+ix])
					}
				}
			}
			out[oy*g.OW+ox] = m
		}
	}
}

// TestMaxPool3x3 checks the vectorized max pooling bit for bit against the
// scalar reference on every plane size from 1x1 to 20x20 and some wide
// ones, strides 1 and 2, pads 0 to 2, with negative values (the padding
// must not read as zero), signed zeros and infinities; with NaNs in the
// input it must either refuse (report false) or agree as well.
func TestMaxPool3x3(t *testing.T) {
	for _, withNaN := range []bool{false, true} {
		t.Run(fmt.Sprintf("nan=%v", withNaN), func(t *testing.T) { testMaxPool3x3(t, withNaN) })
	}
}

func testMaxPool3x3(t *testing.T, withNaN bool) {
	r := rand.New(rand.NewPCG(3, 4))
	special := []float32{float32(math.Copysign(0, -1)), 0, float32(math.Inf(1)), float32(math.Inf(-1))}
	if withNaN {
		special = append(special, float32(math.NaN()))
	}
	var sizes [][2]int
	for h := 1; h <= 20; h++ {
		for w := 1; w <= 20; w++ {
			sizes = append(sizes, [2]int{h, w})
		}
	}
	sizes = append(sizes, [2]int{3, 33}, [2]int{5, 47}, [2]int{2, 64}, [2]int{7, 112})
	ran := 0
	for _, hw := range sizes {
		for _, s := range []int{1, 2} {
			for _, pads := range [][4]int{{1, 1, 1, 1}, {0, 0, 0, 0}, {2, 2, 2, 2}, {1, 0, 0, 1}, {0, 2, 1, 0}} {
				g, err := NewConvGeom(1, hw[0], hw[1], 3, 3, [2]int{s, s}, pads, [2]int{1, 1})
				if err != nil {
					continue // window larger than the padded plane
				}
				const planes = 3
				in := make([]float32, planes*g.H*g.W)
				for i := range in {
					in[i] = -r.Float32() * 4 // all negative: padding read as 0 would show
					if r.IntN(8) == 0 {
						in[i] = special[r.IntN(len(special))]
					}
				}
				got := make([]float32, planes*g.OH*g.OW)
				want := make([]float32, len(got))
				for p := 0; p < planes; p++ {
					maxPoolRef(&g, in[p*g.H*g.W:], want[p*g.OH*g.OW:])
				}
				if !MaxPool3x3(&g, planes, in, got) {
					continue // no vector kernel here, or a NaN refused
				}
				ran++
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
						t.Fatalf("%s: out[%d] = %v, want %v", fmt.Sprintf("%dx%d s%d pads %v", hw[0], hw[1], s, pads), i, got[i], want[i])
					}
				}
			}
		}
	}
	t.Logf("%d geometries checked against the reference", ran)
	if !withNaN && ran == 0 && vectorPool() {
		t.Fatal("the vector kernel refused every geometry")
	}
}
