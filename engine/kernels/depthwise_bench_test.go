package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// dwBenchLayers are the depthwise layers of MobileNetV1 at 224x224:
// channels, input size, stride.
var dwBenchLayers = [][3]int{
	{32, 112, 1}, {64, 112, 2}, {128, 56, 1}, {128, 56, 2}, {256, 28, 1},
	{256, 28, 2}, {512, 14, 1}, {512, 14, 2}, {1024, 7, 1},
}

func BenchmarkDepthwise(b *testing.B) {
	for _, threads := range []int{1, 2} {
		for _, l := range dwBenchLayers {
			c, hw, s := l[0], l[1], l[2]
			b.Run(fmt.Sprintf("t%d/c%d_%dx%d_s%d", threads, c, hw, hw, s), func(b *testing.B) {
				g, err := NewConvGeom(c, hw, hw, 3, 3, [2]int{s, s}, [4]int{1, 1, 1, 1}, [2]int{1, 1})
				if err != nil {
					b.Fatal(err)
				}
				ctx := NewContext(threads)
				defer ctx.Close()
				r := rand.New(rand.NewPCG(1, 2))
				in, w, bias := randSlice(r, c*hw*hw), randSlice(r, c*9), randSlice(r, c)
				out := make([]float32, c*g.OH*g.OW)
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				b.ResetTimer()
				t0 := processCPUTime()
				for i := 0; i < b.N; i++ {
					DepthwiseConv2D(ctx, g, 1, in, w, bias, out)
				}
				cpu := processCPUTime() - t0
				flops := 2 * 9 * float64(c*g.OH*g.OW) * float64(b.N)
				b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				b.ReportMetric(flops/cpu.Seconds()/1e9, "GFLOP/cpu-s")
			})
		}
	}
}

func BenchmarkDepthwiseBackward(b *testing.B) {
	for _, l := range dwBenchLayers {
		c, hw, s := l[0], l[1], l[2]
		b.Run(fmt.Sprintf("t1/c%d_%dx%d_s%d", c, hw, hw, s), func(b *testing.B) {
			g, err := NewConvGeom(c, hw, hw, 3, 3, [2]int{s, s}, [4]int{1, 1, 1, 1}, [2]int{1, 1})
			if err != nil {
				b.Fatal(err)
			}
			ctx := NewContext(1)
			r := rand.New(rand.NewPCG(1, 2))
			in, w, dout := randSlice(r, c*hw*hw), randSlice(r, c*9), randSlice(r, c*g.OH*g.OW)
			din, dw, db := make([]float32, len(in)), make([]float32, len(w)), make([]float32, c)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ResetTimer()
			t0 := processCPUTime()
			for i := 0; i < b.N; i++ {
				DepthwiseConv2DBackward(ctx, g, 1, in, w, dout, din, dw, db)
			}
			cpu := processCPUTime() - t0
			flops := 2 * 2 * 9 * float64(c*g.OH*g.OW) * float64(b.N)
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(flops/cpu.Seconds()/1e9, "GFLOP/cpu-s")
		})
	}
}

// dwFixtureLayers are the depthwise layers of the 32x32 MobileNetV1-0.25
// fixture: channels, input size, stride (run at batch 64).
var dwFixtureLayers = [][3]int{
	{8, 16, 1}, {16, 16, 2}, {32, 8, 1}, {32, 8, 2}, {64, 4, 1},
	{64, 4, 2}, {128, 2, 1}, {128, 2, 2}, {256, 1, 1},
}

func BenchmarkDepthwiseFixture(b *testing.B) {
	const n = 64
	for _, l := range dwFixtureLayers {
		c, hw, s := l[0], l[1], l[2]
		b.Run(fmt.Sprintf("t1/c%d_%dx%d_s%d", c, hw, hw, s), func(b *testing.B) {
			g, err := NewConvGeom(c, hw, hw, 3, 3, [2]int{s, s}, [4]int{1, 1, 1, 1}, [2]int{1, 1})
			if err != nil {
				b.Fatal(err)
			}
			ctx := NewContext(1)
			r := rand.New(rand.NewPCG(1, 2))
			in, w, bias := randSlice(r, n*c*hw*hw), randSlice(r, c*9), randSlice(r, c)
			out := make([]float32, n*c*g.OH*g.OW)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ResetTimer()
			t0 := processCPUTime()
			for i := 0; i < b.N; i++ {
				DepthwiseConv2D(ctx, g, n, in, w, bias, out)
			}
			cpu := processCPUTime() - t0
			flops := 2 * 9 * float64(n*c*g.OH*g.OW) * float64(b.N)
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(flops/cpu.Seconds()/1e9, "GFLOP/cpu-s")
		})
	}
}

func BenchmarkDepthwiseFixtureBackward(b *testing.B) {
	const n = 64
	for _, l := range dwFixtureLayers {
		c, hw, s := l[0], l[1], l[2]
		b.Run(fmt.Sprintf("t1/c%d_%dx%d_s%d", c, hw, hw, s), func(b *testing.B) {
			g, err := NewConvGeom(c, hw, hw, 3, 3, [2]int{s, s}, [4]int{1, 1, 1, 1}, [2]int{1, 1})
			if err != nil {
				b.Fatal(err)
			}
			ctx := NewContext(1)
			r := rand.New(rand.NewPCG(1, 2))
			in, w, dout := randSlice(r, n*c*hw*hw), randSlice(r, c*9), randSlice(r, n*c*g.OH*g.OW)
			din, dw, db := make([]float32, len(in)), make([]float32, len(w)), make([]float32, c)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ResetTimer()
			t0 := processCPUTime()
			for i := 0; i < b.N; i++ {
				DepthwiseConv2DBackward(ctx, g, n, in, w, dout, din, dw, db)
			}
			cpu := processCPUTime() - t0
			flops := 2 * 2 * 9 * float64(n*c*g.OH*g.OW) * float64(b.N)
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(flops/cpu.Seconds()/1e9, "GFLOP/cpu-s")
		})
	}
}
