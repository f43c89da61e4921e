package evaluate

import (
	"errors"
	"fmt"
	"math"
)

// Accuracy accumulates top-1 and top-5 accuracy over labelled samples.
// Samples with a negative label are counted in N but not scored. A sample
// whose logits hold a NaN or an infinity is counted in NonFinite and, when
// labelled, scored as wrong: a broken model never looks accurate.
type Accuracy struct {
	// N counts every sample seen; Labelled counts those with a label.
	N, Labelled int
	// Top1 and Top5 count labelled samples whose label is the first, or
	// among the first five, of the logits.
	Top1, Top5 int
	// NonFinite counts samples (labelled or not) whose logits are not all
	// finite. CheckFinite turns a non-zero count into an error.
	NonFinite int
}

// Add scores a batch of logits (len(labels) rows of classes values).
func (a *Accuracy) Add(logits []float32, classes int, labels []int) error {
	if classes <= 0 || len(logits) != classes*len(labels) {
		return fmt.Errorf("accuracy: %d logits for %d samples of %d classes", len(logits), len(labels), classes)
	}
	for _, lab := range labels {
		if lab >= classes {
			return fmt.Errorf("accuracy: label %d out of range for a model with %d classes", lab, classes)
		}
	}
	for i, lab := range labels {
		a.N++
		row := logits[i*classes : (i+1)*classes]
		finite := allFinite(row)
		if !finite {
			a.NonFinite++
		}
		if lab < 0 {
			continue
		}
		a.Labelled++
		if !finite {
			continue // never correct
		}
		rank := rankOf(row, lab)
		if rank == 0 {
			a.Top1++
		}
		if rank < 5 {
			a.Top5++
		}
	}
	return nil
}

// allFinite reports whether row holds no NaN and no infinity.
func allFinite(row []float32) bool {
	for _, x := range row {
		// x-x is 0 for finite x and NaN for NaN and ±Inf.
		if x-x != 0 {
			return false
		}
	}
	return true
}

// ErrNonFinite is wrapped by the error CheckFinite returns: a model gave
// NaN or infinite logits. Callers return it unless the user asked to carry
// on (the samples then count as wrong).
var ErrNonFinite = errors.New("NaN or infinite logits")

// NonFiniteError reports how many samples a model gave non-finite logits
// for. It wraps ErrNonFinite.
type NonFiniteError struct {
	// Model is the 1-based model number in Run's list (0 when unknown).
	Model int
	// Samples of Total samples had logits that were not all finite.
	Samples, Total int
}

// Error says how many samples were affected and how they were scored.
func (e *NonFiniteError) Error() string {
	who := "the model"
	if e.Model > 0 {
		who = fmt.Sprintf("model %d", e.Model)
	}
	return fmt.Sprintf("%s gave %v for %d of %d samples (a NaN or infinite weight, or an overflow); they are scored as wrong", who, ErrNonFinite, e.Samples, e.Total)
}

// Unwrap returns ErrNonFinite.
func (e *NonFiniteError) Unwrap() error { return ErrNonFinite }

// CheckFinite returns a *NonFiniteError when some sample's logits were not
// all finite, nil otherwise.
func (a Accuracy) CheckFinite() error {
	if a.NonFinite == 0 {
		return nil
	}
	return &NonFiniteError{Samples: a.NonFinite, Total: a.N}
}

// rankOf returns how many entries of row are larger than row[k] (ties with
// a lower index count as larger, matching a stable arg-sort).
func rankOf(row []float32, k int) int {
	v := row[k]
	r := 0
	for j, x := range row {
		if x > v || (x == v && j < k) || (x != x && v == v) {
			r++
		}
	}
	return r
}

// Top1Rate returns Top1/Labelled, or NaN without labelled samples.
func (a Accuracy) Top1Rate() float64 { return ratio(a.Top1, a.Labelled) }

// Top5Rate returns Top5/Labelled, or NaN without labelled samples.
func (a Accuracy) Top5Rate() float64 { return ratio(a.Top5, a.Labelled) }

func ratio(n, d int) float64 {
	if d == 0 {
		return math.NaN()
	}
	return float64(n) / float64(d)
}

// ArgMax returns the index of the largest value of row (the first on ties).
func ArgMax(row []float32) int {
	best := 0
	for j, x := range row {
		if x > row[best] {
			best = j
		}
	}
	return best
}

// Fidelity accumulates how closely logits B follow reference logits A.
type Fidelity struct {
	// N is the number of samples compared; Agree how many share the top-1
	// class, among those whose logits are finite in both.
	N, Agree int
	// NonFinite counts samples whose logits, in a or b, are not all finite;
	// they never count as agreeing.
	NonFinite int
	// MaxAbs is the largest |a-b| over all logits.
	MaxAbs float64
	// sumSqDiff and sumSqRef give the relative L2 difference; sumCos the
	// per-sample cosine similarities.
	sumSqDiff, sumSqRef, sumCos float64
	maxAbsRef                   float64
}

// Add compares one batch: a and b hold the same number of rows of classes
// logits.
func (f *Fidelity) Add(a, b []float32, classes int) error {
	if classes <= 0 || len(a) != len(b) || len(a)%classes != 0 {
		return fmt.Errorf("fidelity: logits of sizes %d and %d for %d classes", len(a), len(b), classes)
	}
	for i := 0; i < len(a)/classes; i++ {
		ra, rb := a[i*classes:(i+1)*classes], b[i*classes:(i+1)*classes]
		var dot, na, nb float64
		for j := range ra {
			x, y := float64(ra[j]), float64(rb[j])
			d := math.Abs(x - y)
			if d > f.MaxAbs || d != d {
				f.MaxAbs = d
			}
			if ax := math.Abs(x); ax > f.maxAbsRef {
				f.maxAbsRef = ax
			}
			f.sumSqDiff += (x - y) * (x - y)
			f.sumSqRef += x * x
			dot += x * y
			na += x * x
			nb += y * y
		}
		if na > 0 && nb > 0 {
			f.sumCos += dot / math.Sqrt(na*nb)
		} else if na == nb {
			f.sumCos++
		}
		if !allFinite(ra) || !allFinite(rb) {
			f.NonFinite++
		} else if ArgMax(ra) == ArgMax(rb) {
			f.Agree++
		}
		f.N++
	}
	return nil
}

// Agreement returns the fraction of samples with the same top-1 class.
func (f Fidelity) Agreement() float64 { return ratio(f.Agree, f.N) }

// RelativeL2 returns ‖a−b‖/‖a‖ over all logits.
func (f Fidelity) RelativeL2() float64 {
	if f.sumSqRef == 0 {
		return math.NaN()
	}
	return math.Sqrt(f.sumSqDiff / f.sumSqRef)
}

// RelativeMaxAbs returns max|a−b| / max|a|.
func (f Fidelity) RelativeMaxAbs() float64 {
	if f.maxAbsRef == 0 {
		return math.NaN()
	}
	return f.MaxAbs / f.maxAbsRef
}

// Cosine returns the mean per-sample cosine similarity of the logits.
func (f Fidelity) Cosine() float64 {
	if f.N == 0 {
		return math.NaN()
	}
	return f.sumCos / float64(f.N)
}

// CheckFinite returns, for every model of the run whose logits were not
// all finite for some sample, a *NonFiniteError naming it (joined when
// there are several), or nil. eval, compare and sweep return it unless
// the user asked to carry on.
func (r *Result) CheckFinite() error {
	var errs []error
	for i, m := range r.Models {
		if m.Accuracy.NonFinite > 0 {
			errs = append(errs, &NonFiniteError{Model: i + 1, Samples: m.Accuracy.NonFinite, Total: m.Accuracy.N})
		}
	}
	return errors.Join(errs...)
}
