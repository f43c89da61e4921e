package svd

import (
	"fmt"
	"strconv"
	"strings"
)

// Residual is the family of the residual path R in W ≈ B A + R.
type Residual int

const (
	// None has no residual: B A is the plain truncated SVD of W.
	None Residual = iota
	// Identity adds the input unchanged (the LPRNet paper's form): W ≈ I + B A.
	Identity
	// Diag scales each channel of the input: W ≈ diag(d) + B A.
	Diag
	// Depthwise applies a KxK depthwise convolution to the input; its centre
	// tap is the Diag solution and the other taps start at zero.
	Depthwise
)

// ResidualKind is a residual family together with its kernel size K (K is
// used by Depthwise only and is 0 for the other families).
type ResidualKind struct {
	Type Residual
	K    int
}

// Kinds for the common residuals.
var (
	KindNone     = ResidualKind{Type: None}
	KindIdentity = ResidualKind{Type: Identity}
	KindDiag     = ResidualKind{Type: Diag}
)

// KindDepthwise returns the depthwise KxK residual kind (K must be odd).
func KindDepthwise(k int) ResidualKind { return ResidualKind{Type: Depthwise, K: k} }

// maxDepthwiseK bounds the depthwise kernel size accepted by ParseResidual.
const maxDepthwiseK = 15

// ParseResidual parses "none", "identity", "diag" or "dwK" with K odd
// (e.g. "dw3", "dw5"; "dw3x3" is accepted too).
func ParseResidual(s string) (ResidualKind, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	switch t {
	case "none":
		return KindNone, nil
	case "identity":
		return KindIdentity, nil
	case "diag":
		return KindDiag, nil
	}
	if rest, ok := strings.CutPrefix(t, "dw"); ok {
		if a, b, found := strings.Cut(rest, "x"); found {
			if a != b {
				return ResidualKind{}, fmt.Errorf("residual %q: depthwise kernel must be square (dwKxK with equal K)", s)
			}
			rest = a
		}
		k, err := strconv.Atoi(rest)
		if err != nil || k < 1 || k%2 == 0 || k > maxDepthwiseK {
			return ResidualKind{}, fmt.Errorf("residual %q: depthwise kernel size must be an odd integer in [1, %d], e.g. dw3", s, maxDepthwiseK)
		}
		return KindDepthwise(k), nil
	}
	return ResidualKind{}, fmt.Errorf("unknown residual %q: want none, identity, diag or dwK with K odd (e.g. dw3)", s)
}

// String returns the name that ParseResidual accepts.
func (k ResidualKind) String() string {
	switch k.Type {
	case None:
		return "none"
	case Identity:
		return "identity"
	case Diag:
		return "diag"
	case Depthwise:
		return "dw" + strconv.Itoa(k.K)
	}
	return fmt.Sprintf("Residual(%d)", int(k.Type))
}

// Validate reports whether k is a usable residual kind.
func (k ResidualKind) Validate() error {
	switch k.Type {
	case None, Identity, Diag:
		if k.K != 0 {
			return fmt.Errorf("residual %v: kernel size %d is only meaningful for depthwise residuals", k, k.K)
		}
		return nil
	case Depthwise:
		if k.K < 1 || k.K%2 == 0 || k.K > maxDepthwiseK {
			return fmt.Errorf("depthwise residual: kernel size %d must be odd and in [1, %d]", k.K, maxDepthwiseK)
		}
		return nil
	}
	return fmt.Errorf("unknown residual type %d", int(k.Type))
}

// NeedsSquare reports whether the residual adds the input to the output, which
// requires C_out == C_in.
func (k ResidualKind) NeedsSquare() bool { return k.Type != None }

// Params returns the number of parameters the residual adds for c channels:
// 0 for none and identity, c for diag, c·K² for a depthwise KxK residual.
func (k ResidualKind) Params(c int) int {
	switch k.Type {
	case Diag:
		return c
	case Depthwise:
		return c * k.K * k.K
	}
	return 0
}
