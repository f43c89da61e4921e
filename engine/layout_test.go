package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// cnValues counts the convolutions of p that read or write a CNHW value.
func cnValues(p *Program) int {
	n := 0
	for _, st := range p.Steps() {
		if op, ok := st.Op.(*ConvOp); ok && (op.cn.x || op.cn.y || op.cn.r) {
			n++
		}
	}
	return n
}

// runBits runs m on x with the channel-major layouts on or off and
// returns the graph output, through one Program (workers < 0) or through
// CompileBatched with that many workers (0: chosen by cost).
func runBits(t *testing.T, m *onnxpb.ModelProto, x *Tensor, threads, workers int, nchw bool) (*Tensor, int) {
	t.Helper()
	opts := Options{Threads: threads, InputShapes: map[string][]int{"input": x.Shape}, nchwOnly: nchw}
	if workers < 0 {
		p, err := Compile(m, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		out, err := p.Run(map[string]*Tensor{"input": x})
		if err != nil {
			t.Fatal(err)
		}
		return out[p.OutputNames()[0]], cnValues(p)
	}
	b, err := CompileBatched(m, opts, workers)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	out, err := b.Run(map[string]*Tensor{"input": x})
	if err != nil {
		t.Fatal(err)
	}
	cn := 0
	for k := range b.Slices() {
		cn += cnValues(b.Program(k))
	}
	return out[b.Program(0).OutputNames()[0]], cn
}

// TestChannelMajorBits checks that the channel-major layouts (layout.go)
// change no bit of the output: the MobileNetV1 and ShuffleNetV2 fixtures
// and their LPR rewrites (every residual kind), batches 1, 3 and 64, 1 and
// 2 threads, one Program and batch slices, against the same programs
// compiled NCHW only. It also checks that the layouts are used where they
// should be (any batch above 1 of these models has small-plane pointwise
// convolutions).
func TestChannelMajorBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, file := range []string{"mobilenetv1.onnx", "shufflenetv2.onnx"} {
		for _, res := range append([]string{""}, lprResiduals...) {
			m := lprFixture(t, file, res)
			for _, batch := range []int{1, 3, 64} {
				x := randTensor(rng, batch, 3, 32, 32)
				for _, threads := range []int{1, 2} {
					for _, workers := range []int{-1, 0} {
						name := fmt.Sprintf("%s/%s/batch%d/threads%d/workers%d", file, res, batch, threads, workers)
						want, off := runBits(t, m, x, threads, workers, true)
						got, on := runBits(t, m, x, threads, workers, false)
						if off != 0 {
							t.Fatalf("%s: %d convolutions use CNHW with the layouts off", name, off)
						}
						if workers < 0 && batch > 1 && on == 0 {
							t.Fatalf("%s: no convolution uses CNHW", name)
						}
						for i := range want.F {
							if math.Float32bits(got.F[i]) != math.Float32bits(want.F[i]) {
								t.Fatalf("%s: output[%d] = %g with CNHW, %g without", name, i, got.F[i], want.F[i])
							}
						}
					}
				}
			}
		}
	}
}

// TestChannelMajorNotForBackward checks that programs kept for backward
// stay NCHW.
func TestChannelMajorNotForBackward(t *testing.T) {
	m := lprFixture(t, "mobilenetv1.onnx", "diag")
	p, err := Compile(m, Options{Threads: 1, InputShapes: map[string][]int{"input": {8, 3, 32, 32}}, KeepForBackward: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if n := cnValues(p); n != 0 {
		t.Fatalf("%d convolutions use CNHW in a program kept for backward", n)
	}
}

// TestChannelMajorChunks checks the CNHW batched path when a chunk holds
// fewer images than the batch (the GEMM then reads and writes column
// ranges of the CNHW rows): every batched convolution of the LPR models
// runs 5 images at a time, with and without CNHW, and the outputs must
// agree bit for bit.
func TestChannelMajorChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	x := randTensor(rng, 23, 3, 32, 32)
	for _, file := range []string{"mobilenetv1.onnx", "shufflenetv2.onnx"} {
		for _, res := range lprResiduals {
			m := lprFixture(t, file, res)
			var outs [2]*Tensor
			for k, nchw := range []bool{true, false} {
				p, err := Compile(m, Options{Threads: 1, InputShapes: map[string][]int{"input": x.Shape}, nchwOnly: nchw})
				if err != nil {
					t.Fatal(err)
				}
				chunked := 0
				for _, st := range p.Steps() {
					if op, ok := st.Op.(*ConvOp); ok && op.Chunk > 0 {
						op.Chunk = 5
						chunked++
					}
				}
				if chunked == 0 {
					t.Fatalf("%s/%s: no batched convolution", file, res)
				}
				out, err := p.Run(map[string]*Tensor{"input": x})
				p.Close()
				if err != nil {
					t.Fatal(err)
				}
				outs[k] = out[p.OutputNames()[0]]
			}
			for i := range outs[0].F {
				if math.Float32bits(outs[0].F[i]) != math.Float32bits(outs[1].F[i]) {
					t.Fatalf("%s/%s: output[%d] = %g with CNHW, %g without", file, res, i, outs[1].F[i], outs[0].F[i])
				}
			}
		}
	}
}
