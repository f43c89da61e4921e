package finetune

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// parallelTolerance bounds, after a few steps, max|p_2 - p_1| / max|p_1|
// over every trained tensor between a 2-thread run (batch-parallel: two
// slices, gradients summed in slice order) and a 1-thread run. The
// gradients differ by float32 reassociation only (relative 1e-6, see
// engine's batchGradTolerance), and a few Adam steps of learning rate 2e-3
// keep the parameters within this bound.
const parallelTolerance = 1e-4

// TestDistillThreadsAgreeAndAreDeterministic fine-tunes the same student
// with 1 and 2 threads: two 2-thread runs must give the same bits, and the
// 2-thread parameters must match the 1-thread ones within
// parallelTolerance.
func TestDistillThreadsAgreeAndAreDeterministic(t *testing.T) {
	teacher, plan := lprFixture(t)
	student, err := convert.Apply(teacher, plan)
	if err != nil {
		t.Fatal(err)
	}
	run := func(threads int) *onnxpb.ModelProto {
		train := loader(t, "train", 200, 50, true)
		o := distillOpts(4)
		o.Threads = threads
		out, _, err := Distill(context.Background(), teacher, student, Data{Train: train, Seek: train.Seek}, o)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	one, two, again := run(1), run(2), run(2)
	worst := 0.0
	defer func() { t.Logf("largest relative difference, 2 threads vs 1: %.3g", worst) }()
	for _, n := range TrainableTensors(student, TrainLPR) {
		a, b, c := initializer(t, one, n), initializer(t, two, n), initializer(t, again, n)
		if !slices.Equal(b, c) {
			t.Errorf("%s: two 2-thread runs differ", n)
		}
		var d, r float64
		for i := range a {
			d = max(d, math.Abs(float64(a[i])-float64(b[i])))
			r = max(r, math.Abs(float64(a[i])))
		}
		worst = max(worst, d/max(r, 1e-30))
		if d > parallelTolerance*r {
			t.Errorf("%s: 2 threads vs 1: max|diff| %.3g > %g * max|p| (%.3g)", n, d, parallelTolerance, r)
		}
	}
}

// TestChunkedUpdateMatchesWholeTensor checks that paramChunks cuts the
// parameters laid end to end into full chunks of consecutive segments
// (chunks spanning tensors included), and that updating them chunk by
// chunk (updateRange), in any order, gives the bits of updating each
// tensor whole, for Adam and SGD with momentum, over a few steps, with
// tensors shorter than, equal to and longer than a chunk.
func TestChunkedUpdateMatchesWholeTensor(t *testing.T) {
	sizes := []int{1, chunkFloats - 1, chunkFloats, chunkFloats + 1, 3*chunkFloats + 17}
	for _, cfg := range []OptimizerConfig{
		{Kind: Adam, WeightDecay: 0.01},
		{Kind: SGD, Momentum: 0.9, Nesterov: true, WeightDecay: 1e-4},
	} {
		whole, chunked := newOptimizer(cfg), newOptimizer(cfg)
		var pw, pc, grads [][]float32
		var names []string
		for i, n := range sizes {
			name := string(rune('a' + i))
			names = append(names, name)
			p, g := make([]float32, n), make([]float32, n)
			for j := range p {
				p[j] = float32(math.Sin(float64(j+i))) * 0.1
				g[j] = float32(math.Cos(float64(3*j+i))) * 0.01
			}
			pw, pc, grads = append(pw, p), append(pc, slices.Clone(p)), append(grads, g)
			chunked.prepare(name, n)
		}
		chunks, _ := paramChunks(pc)
		total := 0
		for _, n := range sizes {
			total += n
		}
		if want := (total + chunkFloats - 1) / chunkFloats; len(chunks) != want {
			t.Fatalf("%d chunks, want %d", len(chunks), want)
		}
		seen := 0
		for c, ch := range chunks {
			n := 0
			for _, sg := range ch {
				n += sg.hi - sg.lo
				if sg.lo != seen-offsetOf(sizes, sg.t) {
					t.Fatalf("chunk %d: segment %+v does not continue the previous one", c, sg)
				}
				seen += sg.hi - sg.lo
			}
			if n != chunkFloats && c != len(chunks)-1 {
				t.Fatalf("chunk %d holds %d values, want %d", c, n, chunkFloats)
			}
		}
		for step := range 3 {
			whole.begin()
			chunked.begin()
			for i, name := range names {
				whole.update(name, pw[i], grads[i], 1e-2)
			}
			for c := len(chunks) - 1; c >= 0; c-- {
				for _, sg := range chunks[c] {
					chunked.updateRange(names[sg.t], sg.lo, pc[sg.t][sg.lo:sg.hi], grads[sg.t][sg.lo:sg.hi], 1e-2)
				}
			}
			for i := range names {
				if !slices.Equal(pw[i], pc[i]) {
					t.Fatalf("%v, step %d: tensor of %d values differs when updated in chunks", cfg.Kind, step, sizes[i])
				}
			}
		}
	}
}

// offsetOf returns where tensor t starts in sizes laid end to end.
func offsetOf(sizes []int, t int) int {
	o := 0
	for _, n := range sizes[:t] {
		o += n
	}
	return o
}
