package finetune

import (
	"fmt"
	"math"
	"strings"
)

// OptimizerKind selects the update rule.
type OptimizerKind int

const (
	// Adam is Adam with decoupled weight decay (AdamW).
	Adam OptimizerKind = iota
	// SGD is stochastic gradient descent with optional momentum, Nesterov
	// momentum and L2 weight decay.
	SGD
)

// ParseOptimizer parses "adam" or "sgd".
func ParseOptimizer(s string) (OptimizerKind, error) {
	switch strings.ToLower(s) {
	case "adam", "adamw":
		return Adam, nil
	case "sgd":
		return SGD, nil
	}
	return 0, fmt.Errorf("unknown optimizer %q (want adam or sgd)", s)
}

// String returns the flag spelling of the optimizer.
func (k OptimizerKind) String() string {
	if k == SGD {
		return "sgd"
	}
	return "adam"
}

// OptimizerConfig holds the optimizer's hyper-parameters.
type OptimizerConfig struct {
	Kind OptimizerKind
	// Momentum for SGD (0: none); Nesterov uses Nesterov momentum.
	Momentum float64
	Nesterov bool
	// WeightDecay: decoupled for Adam, L2 for SGD.
	WeightDecay float64
	// Beta1, Beta2 and Eps for Adam (defaults 0.9, 0.999, 1e-8).
	Beta1, Beta2, Eps float64
}

// optimizer updates a set of named parameters in place.
type optimizer struct {
	cfg OptimizerConfig
	// m and v are Adam's moments or SGD's velocity (m only), per parameter.
	m, v map[string][]float32
	// step counts updates (Adam's bias correction).
	step int
}

func newOptimizer(cfg OptimizerConfig) *optimizer {
	if cfg.Beta1 == 0 {
		cfg.Beta1 = 0.9
	}
	if cfg.Beta2 == 0 {
		cfg.Beta2 = 0.999
	}
	if cfg.Eps == 0 {
		cfg.Eps = 1e-8
	}
	return &optimizer{cfg: cfg, m: map[string][]float32{}, v: map[string][]float32{}}
}

// begin starts an update step (call once per step before update).
func (o *optimizer) begin() { o.step++ }

// prepare allocates the (zero) state of a parameter of n values unless it
// has one, so that later updates only read the state maps: update may
// then run concurrently for different prepared names.
func (o *optimizer) prepare(name string, n int) {
	if o.m[name] == nil {
		o.m[name] = make([]float32, n)
	}
	if o.cfg.Kind == Adam && o.v[name] == nil {
		o.v[name] = make([]float32, n)
	}
}

// update applies one step of learning rate lr to param from grad.
func (o *optimizer) update(name string, param, grad []float32, lr float64) {
	o.prepare(name, len(param))
	o.updateRange(name, 0, param, grad, lr)
}

// updateRange applies one step of learning rate lr to the elements
// [lo, lo+len(param)) of the prepared parameter name, param and grad
// being those elements. Every element's update reads only its own state,
// so updating a tensor in ranges, on any goroutines, gives the bits of
// one update of the whole tensor.
func (o *optimizer) updateRange(name string, lo int, param, grad []float32, lr float64) {
	m := o.m[name][lo : lo+len(param)]
	c := o.cfg
	switch c.Kind {
	case Adam:
		v := o.v[name][lo : lo+len(param)]
		b1, b2 := float32(c.Beta1), float32(c.Beta2)
		bc1 := 1 - math.Pow(c.Beta1, float64(o.step))
		bc2 := 1 - math.Pow(c.Beta2, float64(o.step))
		stepSize := float32(lr / bc1)
		sq := float32(math.Sqrt(bc2))
		eps := float32(c.Eps)
		decay := float32(1 - lr*c.WeightDecay)
		for i, g := range grad {
			m[i] = b1*m[i] + (1-b1)*g
			v[i] = b2*v[i] + (1-b2)*g*g
			p := param[i] * decay
			param[i] = p - stepSize*m[i]/(float32(math.Sqrt(float64(v[i])))/sq+eps)
		}
	case SGD:
		mu, wd, eta := float32(c.Momentum), float32(c.WeightDecay), float32(lr)
		for i, g := range grad {
			g += wd * param[i]
			if mu == 0 {
				param[i] -= eta * g
				continue
			}
			m[i] = mu*m[i] + g
			if c.Nesterov {
				g += mu * m[i]
			} else {
				g = m[i]
			}
			param[i] -= eta * g
		}
	}
}

// Schedule is a learning-rate schedule: linear warm-up from 0 to the peak
// over Warmup steps, then cosine decay to MinRatio·peak at Total steps.
type Schedule struct {
	Peak     float64
	Warmup   int
	Total    int
	MinRatio float64
}

// At returns the learning rate of step s (0-based).
func (s Schedule) At(step int) float64 {
	if s.Warmup > 0 && step < s.Warmup {
		return s.Peak * float64(step+1) / float64(s.Warmup)
	}
	if s.Total <= s.Warmup {
		return s.Peak
	}
	frac := float64(step-s.Warmup) / float64(s.Total-s.Warmup)
	frac = math.Min(math.Max(frac, 0), 1)
	lo := s.Peak * s.MinRatio
	return lo + (s.Peak-lo)*0.5*(1+math.Cos(math.Pi*frac))
}
