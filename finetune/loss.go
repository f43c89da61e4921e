package finetune

import (
	"fmt"
	"math"
	"strings"
)

// LossKind selects the distillation objective.
type LossKind int

const (
	// LossKD is the KL divergence between the teacher's and the student's
	// softmax at a temperature T, scaled by T².
	LossKD LossKind = iota
	// LossKDCE adds cross-entropy with the labels (where known) to LossKD.
	LossKDCE
	// LossMSE is the mean squared difference of the logits.
	LossMSE
)

// ParseLoss parses "kd", "kd+ce" or "mse".
func ParseLoss(s string) (LossKind, error) {
	switch strings.ToLower(s) {
	case "kd":
		return LossKD, nil
	case "kd+ce", "kdce":
		return LossKDCE, nil
	case "mse":
		return LossMSE, nil
	}
	return 0, fmt.Errorf("unknown loss %q (want kd, kd+ce or mse)", s)
}

// String returns the flag spelling of the loss.
func (k LossKind) String() string {
	switch k {
	case LossKD:
		return "kd"
	case LossKDCE:
		return "kd+ce"
	case LossMSE:
		return "mse"
	}
	return fmt.Sprintf("LossKind(%d)", int(k))
}

// Loss computes a distillation loss and its gradient with respect to the
// student's logits.
type Loss struct {
	Kind LossKind
	// Temperature softens both softmaxes of the KD term (default 1).
	Temperature float64
	// CEWeight weighs cross-entropy against KD in LossKDCE: the loss is
	// (1-CEWeight)·KD + CEWeight·CE (default 0.5).
	CEWeight float64
	// scratch rows
	ps, pt []float64
}

// Eval returns the mean loss over n rows of classes logits and writes its
// gradient with respect to student into grad. labels may be nil; negative
// labels are unknown and contribute no cross-entropy.
func (l *Loss) Eval(student, teacher []float32, labels []int, classes int, grad []float32) (float64, error) {
	if classes <= 0 || len(student) != len(teacher) || len(student)%classes != 0 || len(grad) < len(student) {
		return 0, fmt.Errorf("loss: logits of sizes %d and %d for %d classes", len(student), len(teacher), classes)
	}
	n := len(student) / classes
	if labels != nil && len(labels) < n {
		return 0, fmt.Errorf("loss: %d labels for %d samples", len(labels), n)
	}
	if cap(l.ps) < classes {
		l.ps, l.pt = make([]float64, classes), make([]float64, classes)
	}
	ps, pt := l.ps[:classes], l.pt[:classes]
	t := l.Temperature
	if t <= 0 {
		t = 1
	}
	ceW := l.CEWeight
	if l.Kind != LossKDCE {
		ceW = 0
	} else if ceW == 0 {
		ceW = 0.5
	}
	total := 0.0
	inv := 1 / float64(n)
	for i := 0; i < n; i++ {
		s := student[i*classes : (i+1)*classes]
		q := teacher[i*classes : (i+1)*classes]
		g := grad[i*classes : (i+1)*classes]
		if l.Kind == LossMSE {
			for j := range s {
				d := float64(s[j]) - float64(q[j])
				total += d * d * inv / float64(classes)
				g[j] = float32(2 * d * inv / float64(classes))
			}
			continue
		}
		lab := -1
		if labels != nil {
			lab = labels[i]
			if lab >= classes {
				return 0, fmt.Errorf("loss: label %d out of range for %d classes", lab, classes)
			}
		}
		kdW := 1.0
		if ceW > 0 && lab >= 0 {
			kdW = 1 - ceW
		}
		// KD: T² · KL(pt || ps) with both at temperature T;
		// d/ds = T · (ps − pt).
		lse := softmax(s, t, ps)
		softmax(q, t, pt)
		kl := 0.0
		for j := range ps {
			if pt[j] > 0 {
				kl += pt[j] * (math.Log(pt[j]) - (float64(s[j])/t - lse))
			}
			g[j] = float32(kdW * t * (ps[j] - pt[j]) * inv)
		}
		total += kdW * t * t * kl * inv
		if ceW > 0 && lab >= 0 {
			lse1 := softmax(s, 1, ps)
			total += ceW * (lse1 - float64(s[lab])) * inv
			for j := range ps {
				d := ps[j]
				if j == lab {
					d--
				}
				g[j] += float32(ceW * d * inv)
			}
		}
	}
	return total, nil
}

// softmax writes softmax(x/t) to p and returns log-sum-exp of x/t.
func softmax(x []float32, t float64, p []float64) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v)/t)
	}
	sum := 0.0
	for j, v := range x {
		p[j] = math.Exp(float64(v)/t - m)
		sum += p[j]
	}
	for j := range p {
		p[j] /= sum
	}
	return m + math.Log(sum)
}
