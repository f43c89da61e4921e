package convert

import (
	"fmt"

	"github.com/lprconv/lprconv/svd"
)

// CandidateOptions widens the set of candidate layers.
type CandidateOptions struct {
	// NonSquare also accepts 1x1 convolutions whose input and output
	// widths differ (MobileNetV2's expand and project layers). They are
	// factorized with plain low-rank factors, W ≈ B A with A: r x C_in and
	// B: C_out x r (residual none, whatever the plan's residual), and pay
	// off while r*(C_in+C_out) < C_in*C_out.
	NonSquare bool
}

// InputChannels returns C_in: InChannels for non-square candidates,
// Channels for square ones.
func (c Candidate) InputChannels() int {
	if c.InChannels > 0 {
		return c.InChannels
	}
	return c.Channels
}

// NonSquare reports whether the candidate's input and output widths differ.
func (c Candidate) NonSquare() bool {
	return c.InChannels > 0 && c.InChannels != c.Channels
}

// NonSquareBreakEvenRank returns the largest rank r at which the factors
// B A of a C_out x C_in weight have fewer parameters than the weight
// (r*(C_in+C_out) < C_in*C_out), or 0 when no rank is worth it.
func NonSquareBreakEvenRank(out, in int) int {
	if out <= 0 || in <= 0 {
		return 0
	}
	return (out*in - 1) / (out + in)
}

// layerResidual returns the residual kind a candidate is factorized with:
// the plan's, except for non-square candidates, which cannot add their
// input to their output and use residual none.
func layerResidual(plan svd.ResidualKind, c Candidate) svd.ResidualKind {
	if c.NonSquare() && plan.NeedsSquare() {
		return svd.KindNone
	}
	return plan
}

// checkNonSquareFactors rejects factors of a non-square layer whose
// residual needs C_in == C_out.
func checkNonSquareFactors(l *LayerPlan) error {
	if l.NonSquare() && l.Factors.Residual.NeedsSquare() {
		return fmt.Errorf("residual %s needs C_in == C_out, layer is %d -> %d (use residual none)", l.Factors.Residual, l.InChannels, l.Channels)
	}
	return nil
}

// nonSquareBreakEven returns the break-even rank of node i when it is a
// candidate only with CandidateOptions.NonSquare, else 0.
func nonSquareBreakEven(ix *graphIndex, i int) int {
	c, _ := candidateCheckOpts(ix, i, CandidateOptions{NonSquare: true})
	if c == nil || !c.NonSquare() {
		return 0
	}
	return NonSquareBreakEvenRank(c.Channels, c.InChannels)
}
