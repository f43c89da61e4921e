package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// dwBenchLayers are the depthwise layers of MobileNetV1 at 224x224:
// channels, input size, stride.
var dwBenchLayers = [][3]int{
	{32, 112, 1}, {64, 112, 2}, {128, 56, 1}, {128, 56, 2}, {256, 28, 1},
	{256, 28, 2}, {512, 14, 1}, {512, 14, 2}, {1024, 7, 1},
}

// dwFixtureLayers are the depthwise layers of the 32x32 MobileNetV1-0.25
// fixture: channels, input size, stride (run at batch 64).
var dwFixtureLayers = [][3]int{
	{8, 16, 1}, {16, 16, 2}, {32, 8, 1}, {32, 8, 2}, {64, 4, 1},
	{64, 4, 2}, {128, 2, 1}, {128, 2, 2}, {256, 1, 1},
}

func BenchmarkDepthwise(b *testing.B) {
	benchDepthwise(b, dwBenchLayers, 1, []int{1, 2}, false)
}

func BenchmarkDepthwiseBackward(b *testing.B) {
	benchDepthwise(b, dwBenchLayers, 1, []int{1}, true)
}

func BenchmarkDepthwiseFixture(b *testing.B) {
	benchDepthwise(b, dwFixtureLayers, 64, []int{1}, false)
}

func BenchmarkDepthwiseFixtureBackward(b *testing.B) {
	benchDepthwise(b, dwFixtureLayers, 64, []int{1}, true)
}

// benchDepthwise runs the 3x3 depthwise convolution (pad 1) of each layer
// (channels, input size, stride) at batch n with each thread count: the
// forward pass, or with backward all three gradients.
func benchDepthwise(b *testing.B, layers [][3]int, n int, threads []int, backward bool) {
	for _, th := range threads {
		for _, l := range layers {
			c, hw, s := l[0], l[1], l[2]
			b.Run(fmt.Sprintf("t%d/c%d_%dx%d_s%d", th, c, hw, hw, s), func(b *testing.B) {
				g, err := NewConvGeom(c, hw, hw, 3, 3, [2]int{s, s}, [4]int{1, 1, 1, 1}, [2]int{1, 1})
				if err != nil {
					b.Fatal(err)
				}
				ctx := NewContext(th)
				defer ctx.Close()
				r := rand.New(rand.NewPCG(1, 2))
				flops := 2 * 9 * float64(n*c*g.OH*g.OW)
				if !backward {
					in, w, bias := randSlice(r, n*c*hw*hw), randSlice(r, c*9), randSlice(r, c)
					out := make([]float32, n*c*g.OH*g.OW)
					benchFLOPs(b, processCPUTime, flops, func() { DepthwiseConv2D(ctx, g, n, in, w, bias, out) })
					return
				}
				in, w, dout := randSlice(r, n*c*hw*hw), randSlice(r, c*9), randSlice(r, n*c*g.OH*g.OW)
				din, dw, db := make([]float32, len(in)), make([]float32, len(w)), make([]float32, c)
				benchFLOPs(b, processCPUTime, 2*flops, func() { DepthwiseConv2DBackward(ctx, g, n, in, w, dout, din, dw, db) })
			})
		}
	}
}

// benchFLOPs runs op b.N times with the goroutine locked to its OS thread
// and reports the throughput of flops floating-point operations per run
// in GFLOP per second of wall time and per second of CPU time (as clock
// measures it: threadCPUTime or processCPUTime).
func benchFLOPs(b *testing.B, clock func() time.Duration, flops float64, op func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	t0 := clock()
	for i := 0; i < b.N; i++ {
		op()
	}
	cpu := clock() - t0
	total := flops * float64(b.N)
	b.ReportMetric(total/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	b.ReportMetric(total/cpu.Seconds()/1e9, "GFLOP/cpu-s")
}
