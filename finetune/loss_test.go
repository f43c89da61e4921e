package finetune

import (
	"math"
	"math/rand"
	"testing"
)

// TestLossGradient checks every loss's gradient against central finite
// differences in float64.
func TestLossGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const n, classes = 3, 5
	s := make([]float32, n*classes)
	q := make([]float32, n*classes)
	for i := range s {
		s[i] = float32(rng.NormFloat64() * 2)
		q[i] = float32(rng.NormFloat64() * 2)
	}
	labels := []int{2, -1, 4}
	for _, l := range []Loss{
		{Kind: LossKD, Temperature: 1},
		{Kind: LossKD, Temperature: 4},
		{Kind: LossKDCE, Temperature: 2, CEWeight: 0.3},
		{Kind: LossMSE},
	} {
		grad := make([]float32, len(s))
		if _, err := l.Eval(s, q, labels, classes, grad); err != nil {
			t.Fatal(err)
		}
		scratch := make([]float32, len(s))
		for i := range s {
			const h = 1e-2
			orig := s[i]
			s[i] = orig + h
			up, _ := l.Eval(s, q, labels, classes, scratch)
			s[i] = orig - h
			down, _ := l.Eval(s, q, labels, classes, scratch)
			s[i] = orig
			fd := (up - down) / (2 * h)
			if math.Abs(fd-float64(grad[i])) > 2e-3*math.Max(1, math.Abs(fd)) {
				t.Errorf("%v T=%v: d/ds[%d] = %v, finite difference %v", l.Kind, l.Temperature, i, grad[i], fd)
			}
		}
	}
}

func TestLossValues(t *testing.T) {
	// Identical logits: KD and MSE are zero; CE is the log-softmax loss.
	s := []float32{1, 2, 3}
	grad := make([]float32, 3)
	for _, kind := range []LossKind{LossKD, LossMSE} {
		l := Loss{Kind: kind, Temperature: 3}
		v, err := l.Eval(s, s, nil, 3, grad)
		if err != nil || math.Abs(v) > 1e-12 {
			t.Errorf("%v of identical logits = %v, %v", kind, v, err)
		}
	}
	l := Loss{Kind: LossKDCE, CEWeight: 1}
	v, _ := l.Eval(s, s, []int{0}, 3, grad)
	want := math.Log(math.Exp(1)+math.Exp(2)+math.Exp(3)) - 1
	if math.Abs(v-want) > 1e-9 {
		t.Errorf("CE = %v, want %v", v, want)
	}
	if _, err := l.Eval(s, s[:2], nil, 3, grad); err == nil {
		t.Error("mismatched logits accepted")
	}
	if _, err := l.Eval(s, s, []int{3}, 3, grad); err == nil {
		t.Error("out-of-range label accepted")
	}
	for _, bad := range []string{"", "kl", "ce"} {
		if _, err := ParseLoss(bad); err == nil {
			t.Errorf("ParseLoss(%q) accepted", bad)
		}
	}
}

func TestOptimizers(t *testing.T) {
	// SGD with momentum and Nesterov, by hand: p=1, g=2p each step.
	for _, tc := range []struct {
		cfg  OptimizerConfig
		want float32
	}{
		// v1 = 2; p = 1 - 0.1*2 = 0.8; v2 = 0.9*2 + 1.6 = 3.4; p = 0.8 - 0.34 = 0.46
		{OptimizerConfig{Kind: SGD, Momentum: 0.9}, 0.46},
		// Nesterov: g1' = 2 + 0.9*2 = 3.8, p = 0.62; g2 = 1.24, v2 = 1.8+1.24 = 3.04,
		// g2' = 1.24 + 0.9*3.04 = 3.976, p = 0.62 - 0.3976 = 0.2224
		{OptimizerConfig{Kind: SGD, Momentum: 0.9, Nesterov: true}, 0.2224},
		// plain SGD with weight decay 0.5: g = 2p + 0.5p = 2.5p, p *= 0.75 twice
		{OptimizerConfig{Kind: SGD, WeightDecay: 0.5}, 0.5625},
	} {
		o := newOptimizer(tc.cfg)
		p := []float32{1}
		for range 2 {
			o.begin()
			o.update("p", p, []float32{2 * p[0]}, 0.1)
		}
		if math.Abs(float64(p[0]-tc.want)) > 1e-6 {
			t.Errorf("%+v: p = %v, want %v", tc.cfg, p[0], tc.want)
		}
	}
	// Adam's first step moves every coordinate by lr, whatever the scale.
	o := newOptimizer(OptimizerConfig{Kind: Adam})
	p := []float32{1, -1}
	o.begin()
	o.update("p", p, []float32{1000, -0.001}, 0.01)
	if math.Abs(float64(p[0]-0.99)) > 1e-5 || math.Abs(float64(p[1]+0.99)) > 1e-3 {
		t.Errorf("Adam first step: %v", p)
	}
	// Adam minimizes a quadratic.
	o = newOptimizer(OptimizerConfig{Kind: Adam})
	q := []float32{3, -2}
	for range 500 {
		o.begin()
		o.update("q", q, []float32{2 * q[0], 2 * q[1]}, 0.05)
	}
	if math.Abs(float64(q[0])) > 1e-2 || math.Abs(float64(q[1])) > 1e-2 {
		t.Errorf("Adam did not minimize: %v", q)
	}
}

func TestSchedule(t *testing.T) {
	s := Schedule{Peak: 1, Warmup: 4, Total: 14, MinRatio: 0.1}
	for _, tc := range []struct {
		step int
		want float64
	}{{0, 0.25}, {3, 1}, {4, 1}, {9, 0.55}, {14, 0.1}, {100, 0.1}} {
		if got := s.At(tc.step); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("At(%d) = %v, want %v", tc.step, got, tc.want)
		}
	}
}
