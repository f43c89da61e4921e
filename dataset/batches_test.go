package dataset

import (
	"math"
	"testing"
)

// readNoise reads every sample of n in batches of batch.
func readNoise(t *testing.T, n Noise, batch int) []float32 {
	t.Helper()
	r, err := n.Open(batch)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var all []float32
	buf := make([]float32, batch*n.Size)
	labels := make([]int, batch)
	eachBatch(t, r, buf, labels, func(k int) {
		if k > batch {
			t.Fatalf("batch of %d samples, asked for %d", k, batch)
		}
		for _, l := range labels[:k] {
			if l != -1 {
				t.Fatalf("label %d, want -1", l)
			}
		}
		all = append(all, buf[:k*n.Size]...)
	})
	return all
}

// TestNoiseDeterministic: the same seed gives the same samples, another
// seed others, and the samples do not depend on the batch size.
func TestNoiseDeterministic(t *testing.T) {
	n := Noise{Count: 7, Size: 5, Seed: 3}
	a, b := readNoise(t, n, 1), readNoise(t, n, 3)
	if len(a) != 35 || len(b) != 35 {
		t.Fatalf("%d and %d values, want 35", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("value %d differs between batch sizes", i)
		}
	}
	c := readNoise(t, Noise{Count: 7, Size: 5, Seed: 4}, 2)
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	if same == len(a) {
		t.Error("another seed gave the same samples")
	}
	// Standard normal: the mean of many samples is near 0, the variance near 1.
	big := readNoise(t, Noise{Count: 400, Size: 50, Seed: 1}, 64)
	var sum, sq float64
	for _, v := range big {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	mean := sum / float64(len(big))
	variance := sq/float64(len(big)) - mean*mean
	// 20000 draws: the standard error of the mean is 1/sqrt(20000) ≈ 0.007.
	if math.Abs(mean) > 0.05 || math.Abs(variance-1) > 0.05 {
		t.Errorf("mean %.4f variance %.4f, want about 0 and 1", mean, variance)
	}
	if _, err := (Noise{Count: 3, Size: 0}).Open(2); err == nil {
		t.Error("size 0 accepted")
	}
}
