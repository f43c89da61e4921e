package sweep

import "math"

// argmax returns the index of the largest value (the first one on ties),
// or -1 for an empty slice.
func argmax(v []float32) int {
	best := -1
	for i, x := range v {
		if best < 0 || x > v[best] {
			best = i
		}
	}
	return best
}

// cosine returns the cosine similarity of a and b, accumulated in float64.
// Two zero vectors are identical (1); a zero and a non-zero vector are
// unrelated (0).
func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		dot += x * y
		na += x * x
		nb += y * y
	}
	switch {
	case na == 0 && nb == 0:
		return 1
	case na == 0 || nb == 0:
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// fidelity accumulates how closely a model's outputs follow the
// original's, sample by sample.
type fidelity struct {
	n, agree int
	cosSum   float64
}

// add compares one sample's outputs with the reference outputs.
func (f *fidelity) add(ref, got []float32) {
	f.n++
	if argmax(ref) == argmax(got) {
		f.agree++
	}
	f.cosSum += cosine(ref, got)
}

// agreement is the fraction of samples whose top-1 class matches.
func (f *fidelity) agreement() float64 {
	if f.n == 0 {
		return 0
	}
	return float64(f.agree) / float64(f.n)
}

// meanCosine is the mean per-sample cosine similarity of the outputs.
func (f *fidelity) meanCosine() float64 {
	if f.n == 0 {
		return 0
	}
	return f.cosSum / float64(f.n)
}

// accuracy counts top-1 hits on labelled samples.
type accuracy struct{ n, hits int }

// add scores one sample; unlabelled samples (label < 0) are ignored.
func (a *accuracy) add(out []float32, label int) {
	if label < 0 {
		return
	}
	a.n++
	if argmax(out) == label {
		a.hits++
	}
}

// value returns the accuracy, or nil when no sample was labelled.
func (a *accuracy) value() *float64 {
	if a.n == 0 {
		return nil
	}
	v := float64(a.hits) / float64(a.n)
	return &v
}
