package engine

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestParallelRunsEveryIndexOnce checks that Parallel runs f exactly once
// for every index, with 1, 2 and 4 workers, between the passes of the
// program, and after the workers have been idle longer than spinBudget
// (so that they have blocked and must be woken through their channels).
func TestParallelRunsEveryIndexOnce(t *testing.T) {
	m := lprFixture(t, "mobilenetv1.onnx", "")
	name := m.Graph.Input[0].Name
	shape := []int{4, 3, 32, 32}
	in := map[string]*Tensor{name: randTensor(rand.New(rand.NewPCG(3, 4)), shape...)}
	for _, workers := range []int{1, 2, 4} {
		b, err := CompileBatched(m, Options{Threads: workers, InputShapes: map[string][]int{name: shape}}, workers)
		if err != nil {
			t.Fatal(err)
		}
		for round, n := range []int{0, 1, 3, 1000} {
			if err := b.Forward(in); err != nil {
				t.Fatal(err)
			}
			if round == 2 {
				time.Sleep(3 * spinBudget)
			}
			counts := make([]int, n)
			b.Parallel(n, func(i int) { counts[i]++ })
			for i, c := range counts {
				if c != 1 {
					t.Fatalf("%d workers, %d items: index %d ran %d times", workers, n, i, c)
				}
			}
		}
		b.Close()
	}
}

// TestShareWorkersKeepsResults runs an inference program (3 workers) and
// a training program (2 workers) of the same model on one set of worker
// goroutines, alternating as a fine-tuning step does, and checks that the
// outputs and gradients are bit-identical to those of the programs run on
// their own workers; then that the training program keeps working after
// the program whose workers it borrowed is closed.
func TestShareWorkersKeepsResults(t *testing.T) {
	m := lprFixture(t, "mobilenetv1.onnx", "")
	name, out := m.Graph.Input[0].Name, m.Graph.Output[0].Name
	shape := []int{6, 3, 32, 32}
	rng := rand.New(rand.NewPCG(7, 8))
	x := map[string]*Tensor{name: randTensor(rng, shape...)}
	compile := func() (*Batched, *Batched) {
		inf, err := CompileBatched(m, Options{Threads: 3, InputShapes: map[string][]int{name: shape}}, 3)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := CompileBatched(m, Options{Threads: 2, InputShapes: map[string][]int{name: shape}, Trainable: convWeights(m), KeepForBackward: true}, 2)
		if err != nil {
			t.Fatal(err)
		}
		return inf, tr
	}
	var dOut *Tensor
	step := func(inf, tr *Batched) (logits []float32, grads map[string][]float32) {
		if err := inf.Forward(x); err != nil {
			t.Fatal(err)
		}
		logits = slices.Clone(inf.Value(out).F)
		if err := tr.Forward(x); err != nil {
			t.Fatal(err)
		}
		if dOut == nil {
			dOut = randTensor(rng, tr.Value(out).Shape...)
		}
		if err := tr.Backward(map[string]*Tensor{out: dOut}); err != nil {
			t.Fatal(err)
		}
		grads = map[string][]float32{}
		for _, n := range tr.ParamNames() {
			grads[n] = slices.Clone(tr.Grad(n))
		}
		return logits, grads
	}
	inf, tr := compile()
	wantLogits, wantGrads := step(inf, tr)
	inf.Close()
	tr.Close()

	inf, tr = compile()
	defer tr.Close()
	if err := tr.ShareWorkers(inf); err != nil {
		t.Fatal(err)
	}
	if inf.team != tr.team || len(tr.team.workers) != 2 {
		t.Fatalf("shared team has %d goroutines (want 2, the inference program's 3 workers less the caller)", len(tr.team.workers))
	}
	check := func(what string, logits []float32, grads map[string][]float32) {
		if logits != nil && !slices.Equal(logits, wantLogits) {
			t.Errorf("%s: outputs differ from unshared workers", what)
		}
		for n, g := range grads {
			if !slices.Equal(g, wantGrads[n]) {
				t.Errorf("%s: gradient of %q differs from unshared workers", what, n)
			}
		}
	}
	for round := range 3 {
		logits, grads := step(inf, tr)
		check("shared workers, round "+string(rune('1'+round)), logits, grads)
	}
	inf.Close()
	if tr.team.workers == nil {
		t.Fatal("closing one program stopped the workers the other still uses")
	}
	if err := tr.Forward(x); err != nil {
		t.Fatal(err)
	}
	if err := tr.Backward(map[string]*Tensor{out: dOut}); err != nil {
		t.Fatal(err)
	}
	grads := map[string][]float32{}
	for _, n := range tr.ParamNames() {
		grads[n] = tr.Grad(n)
	}
	check("after closing the lender", nil, grads)
}
