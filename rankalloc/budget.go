package rankalloc

import (
	"fmt"
	"strconv"
	"strings"
)

// Resource is what a budget limits.
type Resource int

const (
	// Params limits the model's parameter count.
	Params Resource = iota
	// MACs limits the model's multiply-accumulates per inference.
	MACs
	// Latency limits the model's latency measured in a runtime: each
	// layer's cost at each rank comes from a LatencyTable (see
	// Options.Latency).
	Latency
)

// String returns "params", "macs" or "latency".
func (r Resource) String() string {
	switch r {
	case MACs:
		return "macs"
	case Latency:
		return "latency"
	}
	return "params"
}

// Budget is the fraction of the original model's total parameters, MACs
// or measured latency that the compressed model may keep.
type Budget struct {
	Resource Resource
	// Fraction is in (0, 1].
	Fraction float64
}

// String returns the form ParseBudget reads, e.g. "params=0.6".
func (b Budget) String() string {
	return b.Resource.String() + "=" + strconv.FormatFloat(b.Fraction, 'g', -1, 64)
}

// Validate checks the fraction.
func (b Budget) Validate() error {
	if b.Resource != Params && b.Resource != MACs && b.Resource != Latency {
		return fmt.Errorf("budget: unknown resource %d", b.Resource)
	}
	if !(b.Fraction > 0 && b.Fraction <= 1) {
		return fmt.Errorf("budget %s: the fraction must be greater than 0 and at most 1", b)
	}
	return nil
}

// ParseBudget reads "params=F", "macs=F" or "latency=F" (F in (0, 1],
// e.g. 0.6, 60% or 3/5); a bare fraction limits parameters.
func ParseBudget(s string) (Budget, error) {
	var b Budget
	v := strings.TrimSpace(s)
	if k, rest, ok := strings.Cut(v, "="); ok {
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "params", "parameters":
			b.Resource = Params
		case "macs", "flops":
			b.Resource = MACs
		case "latency", "time":
			b.Resource = Latency
		default:
			return b, fmt.Errorf("budget %q: want params=F, macs=F or latency=F", s)
		}
		v = strings.TrimSpace(rest)
	}
	f, err := parseFraction(v)
	if err != nil {
		return b, fmt.Errorf("budget %q: %v", s, err)
	}
	b.Fraction = f
	if err := b.Validate(); err != nil {
		return b, fmt.Errorf("budget %q: the fraction must be greater than 0 and at most 1", s)
	}
	return b, nil
}

func parseFraction(v string) (float64, error) {
	scale := 1.0
	if strings.HasSuffix(v, "%") {
		v, scale = strings.TrimSpace(strings.TrimSuffix(v, "%")), 0.01
	}
	if num, den, ok := strings.Cut(v, "/"); ok {
		n, err1 := strconv.ParseFloat(strings.TrimSpace(num), 64)
		d, err2 := strconv.ParseFloat(strings.TrimSpace(den), 64)
		if err1 != nil || err2 != nil || d == 0 {
			return 0, fmt.Errorf("want a fraction like 0.6, 60%% or 3/5")
		}
		return scale * n / d, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("want a fraction like 0.6, 60%% or 3/5")
	}
	return scale * f, nil
}
