package chanperm

import (
	"context"
	"math/rand/v2"
	"testing"
)

// bruteMax returns the largest Σ a[i, p(i)] over all permutations.
func bruteMax(a []float64, n int) float64 {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	best := -1e300
	var rec func(k int)
	rec = func(k int) {
		if k == n {
			s := 0.0
			for i, j := range p {
				s += a[i*n+j]
			}
			best = max(best, s)
			return
		}
		for i := k; i < n; i++ {
			p[k], p[i] = p[i], p[k]
			rec(k + 1)
			p[k], p[i] = p[i], p[k]
		}
	}
	rec(0)
	return best
}

func TestMaxAssignmentBrute(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 200; trial++ {
		n := 1 + trial%7
		a := make([]float64, n*n)
		for i := range a {
			a[i] = r.NormFloat64()
			if trial%3 == 0 {
				a[i] = float64(r.IntN(3)) // ties
			}
		}
		p, err := MaxAssignment(context.Background(), a, n)
		if err != nil {
			t.Fatal(err)
		}
		seen := make([]bool, n)
		s := 0.0
		for i, j := range p {
			if j < 0 || j >= n || seen[j] {
				t.Fatalf("n=%d: %v is not a permutation", n, p)
			}
			seen[j] = true
			s += a[i*n+j]
		}
		if want := bruteMax(a, n); s < want-1e-9 {
			t.Fatalf("n=%d trial %d: sum %v, optimum %v", n, trial, s, want)
		}
	}
}

func TestMaxAssignmentErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := MaxAssignment(ctx, []float64{1, 2, 3}, 2); err == nil {
		t.Error("wrong length accepted")
	}
	nan := []float64{0, 0, 0, 0}
	nan[2] = nan[2] / nan[0]
	if _, err := MaxAssignment(ctx, nan, 2); err == nil {
		t.Error("NaN accepted")
	}
	if p, err := MaxAssignment(ctx, nil, 0); err != nil || len(p) != 0 {
		t.Errorf("empty: %v %v", p, err)
	}
	// The identity is optimal for a dominant diagonal.
	n := 50
	a := make([]float64, n*n)
	for i := 0; i < n; i++ {
		a[i*n+i] = 10
	}
	p, _ := MaxAssignment(ctx, a, n)
	for i, j := range p {
		if i != j {
			t.Fatalf("p[%d] = %d", i, j)
		}
	}
}

func BenchmarkMaxAssignment512(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 512
	a := make([]float64, n*n)
	for i := range a {
		a[i] = r.NormFloat64()
	}
	for b.Loop() {
		MaxAssignment(context.Background(), a, n)
	}
}
