package convert

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/lprconv/lprconv/svd"
)

// Selection chooses which candidate layers are replaced, on top of the rank
// rule (svd.Policy) that NewPlan applies to the others. The zero Selection
// leaves every layer to the rule; with the zero rule as well, NewPlan
// replaces nothing (a plan that lists every candidate with its folded
// weights, as measurements need).
type Selection struct {
	// Exclude keeps the layers whose name matches any of these patterns;
	// it is checked before Ranks.
	Exclude []*regexp.Regexp
	// Ranks fixes single layers by exact name (--layer-rank, or a budget's
	// allocation): a positive Rank replaces the layer at that rank (used
	// as given, not rounded), Rank 0 keeps it.
	Ranks map[string]LayerRank
	// Force replaces a layer even when its LPR module is not smaller.
	Force bool
}

// LayerRank is an explicit decision for one layer.
type LayerRank struct {
	// Rank is the rank to replace the layer at, or 0 to keep it.
	Rank int
	// Reason says why the layer is kept (Rank 0); it is shown in the plan.
	Reason string
}

// Decision tells whether a layer is replaced and, if not, why.
type Decision struct {
	// Rank is the chosen rank (0 when no rank was chosen).
	Rank int
	// Replace is true when the layer should be factorized at Rank.
	Replace bool
	// Excluded is true when an Exclude pattern matched the layer name.
	Excluded bool
	// Reason explains the decision in words.
	Reason string
	// Params is the parameter count of the LPR module: r·(in+out) plus the
	// residual's parameters.
	Params int
	// DenseParams is the parameter count of the original weight, out·in.
	DenseParams int
}

// ParseExclude compiles name patterns for Selection.Exclude.
func ParseExclude(patterns []string) ([]*regexp.Regexp, error) {
	res := make([]*regexp.Regexp, 0, len(patterns))
	for _, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("exclude pattern %q: %w", p, err)
		}
		res = append(res, re)
	}
	return res, nil
}

// Validate checks the selection values.
func (s Selection) Validate() error {
	for name, r := range s.Ranks {
		if r.Rank < 0 {
			return fmt.Errorf("layer selection: rank %d of layer %q must not be negative", r.Rank, name)
		}
	}
	for i, re := range s.Exclude {
		if re == nil {
			return fmt.Errorf("layer selection: exclude pattern %d is nil", i)
		}
	}
	return nil
}

// Excludes reports whether one of the Exclude patterns matches name.
func (s Selection) Excludes(name string) bool {
	for _, re := range s.Exclude {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

// Decide makes the decision for the layer called name with an out x in
// weight: excluded by a pattern, else the explicit rank, else the rank of
// rule (spectrum as for svd.Policy.Choose). residualParams is the
// residual's parameter count (svd.ResidualKind.Params). A layer is
// replaced only while r·(in+out) + residualParams < out·in, unless Force
// is set.
func (s Selection) Decide(rule svd.Policy, name string, out, in int, spectrum []float64, residualParams int) (Decision, error) {
	if err := s.Validate(); err != nil {
		return Decision{}, err
	}
	if out < 1 || in < 1 {
		return Decision{}, fmt.Errorf("layer %q: shape %dx%d must be positive", name, out, in)
	}
	if residualParams < 0 {
		return Decision{}, fmt.Errorf("layer %q: residual parameter count %d is negative", name, residualParams)
	}
	dec := Decision{DenseParams: out * in}
	for _, re := range s.Exclude {
		if re.MatchString(name) {
			dec.Excluded = true
			dec.Reason = fmt.Sprintf("excluded by pattern %q", re.String())
			return dec, nil
		}
	}
	c := min(out, in)
	var r int
	var how string
	if o, ok := s.Ranks[name]; ok {
		if o.Rank > c {
			return Decision{}, fmt.Errorf("layer %q: rank %d exceeds min(out, in) = %d", name, o.Rank, c)
		}
		if o.Rank == 0 {
			dec.Reason = o.Reason
			if dec.Reason == "" {
				dec.Reason = "kept: its per-layer rank is 0"
			}
			return dec, nil
		}
		r, how = o.Rank, "override"
	} else {
		var err error
		if r, how, err = rule.Choose(out, in, spectrum); err != nil {
			return Decision{}, fmt.Errorf("layer %q: %w", name, err)
		}
		if r == 0 {
			dec.Reason = "no per-layer rank for this layer and no rank rule"
			return dec, nil
		}
	}
	dec.Rank = r
	dec.Params = r*(in+out) + residualParams
	switch {
	case dec.Params < dec.DenseParams:
		dec.Replace = true
		dec.Reason = fmt.Sprintf("rank %d (%s): %d parameters instead of %d", r, how, dec.Params, dec.DenseParams)
	case s.Force:
		dec.Replace = true
		dec.Reason = fmt.Sprintf("rank %d (%s) forced although %d parameters >= %d", r, how, dec.Params, dec.DenseParams)
	default:
		dec.Reason = fmt.Sprintf("rank %d (%s) does not shrink the layer: %d·(%d+%d) + %d = %d parameters >= %d", r, how, r, in, out, residualParams, dec.Params, dec.DenseParams)
	}
	return dec, nil
}

// checkRanks rejects per-layer ranks for names that are not candidates,
// so that a mistyped layer name is reported instead of silently ignored.
func (s Selection) checkRanks(cands []Candidate) error {
	known := make(map[string]bool, len(cands))
	for _, c := range cands {
		known[c.Name] = true
	}
	var unknown []string
	for name := range s.Ranks {
		if !known[name] {
			unknown = append(unknown, fmt.Sprintf("%q", name))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return fmt.Errorf("per-layer rank for %s: no such candidate layer (lprconv inspect lists the candidates' names)", strings.Join(unknown, ", "))
}
