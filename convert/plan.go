package convert

import (
	"context"
	"fmt"

	"github.com/lprconv/lprconv/internal/checked"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// PlanOptions tunes NewPlan.
type PlanOptions struct {
	// Shapes sets the input shape used for MAC accounting.
	Shapes ShapeOptions
	// SVD tunes the factorization.
	SVD svd.Options
	// Workers bounds the factorizations run at once (0: GOMAXPROCS).
	Workers int
	// Candidates selects the candidate layers (e.g. NonSquare 1x1
	// convolutions, which are factorized with residual none).
	Candidates CandidateOptions
	// ChannelAlign keeps layers whose output channel count is not a
	// multiple of it (0 or 1: no such rule). ONNX Runtime runs
	// convolutions over such channel counts outside its blocked (NCHWc)
	// layout, where the LPR module's extra nodes cost more time than its
	// fewer MACs save (bench/compress: ShuffleNetV2 x1.0's C = 58 layers).
	ChannelAlign int
	// Select excludes layers, fixes single layers' ranks and forces
	// replacements on top of the rank rule.
	Select Selection
}

// LayerPlan is the decision for one candidate layer.
type LayerPlan struct {
	Candidate
	// Rank is the chosen rank (0 when the policy gave none, e.g. excluded).
	Rank int `json:"rank"`
	// Replace is true when the layer is rewritten; Reason says why or why
	// not, Excluded marks layers skipped by an exclude pattern.
	Replace  bool   `json:"replace"`
	Excluded bool   `json:"excluded,omitempty"`
	Reason   string `json:"reason"`
	// Residual is the residual kind of the LPR module.
	Residual svd.ResidualKind `json:"-"`
	// W is the C x C weight (row-major, out x in) with any following
	// BatchNormalization folded in, and Bias the matching bias (zeros when
	// there is none). They are what the factors approximate.
	W    []float32 `json:"-"`
	Bias []float32 `json:"-"`
	// Factors are the data-free factors of W computed by NewPlan for
	// replaced layers. A caller may replace them (e.g. with data-aware
	// factors from svd.FactorizeData) before Apply; Apply writes whatever
	// is here and takes the residual from Factors.Residual.
	Factors *svd.Factors `json:"-"`
	// RelErr is the relative weight reconstruction error
	// ‖W − (B A + R)‖_F / ‖W‖_F of the data-free factors.
	RelErr float64 `json:"rel_err"`
	// ParamsBefore counts the layer's weight, bias and folded
	// BatchNormalization parameters; ParamsAfter those of its LPR module
	// (equal to ParamsBefore when the layer is kept).
	ParamsBefore int64 `json:"params_before"`
	ParamsAfter  int64 `json:"params_after"`
	// MACsBefore and MACsAfter count the layer's multiply-accumulates
	// (including a folded BatchNormalization) before and after.
	MACsBefore int64 `json:"macs_before"`
	MACsAfter  int64 `json:"macs_after"`
}

// Plan is the set of decisions for every candidate of one model.
type Plan struct {
	// Residual is the residual kind NewPlan factorized with.
	Residual svd.ResidualKind `json:"-"`
	// Layers lists every candidate in node order, replaced or not.
	Layers []LayerPlan `json:"layers"`
	// ParamsBefore, MACsBefore are the whole model's totals (see Inspect);
	// ParamsAfter, MACsAfter the totals once Apply has run.
	ParamsBefore int64 `json:"params_before"`
	ParamsAfter  int64 `json:"params_after"`
	MACsBefore   int64 `json:"macs_before"`
	MACsAfter    int64 `json:"macs_after"`
	// Tool names the program writing the model (recorded in metadata).
	Tool string `json:"-"`
}

// Replaced returns the number of layers the plan rewrites.
func (p *Plan) Replaced() int {
	n := 0
	for _, l := range p.Layers {
		if l.Replace {
			n++
		}
	}
	return n
}

// NewPlan finds the candidates of m, decides each one with opts.Select and
// the rank rule policy (see Selection.Decide), and computes data-free factors with the residual kind for the layers to
// replace. It does not modify m.
func NewPlan(ctx context.Context, m *onnxpb.ModelProto, policy svd.Policy, residual svd.ResidualKind, opts PlanOptions) (*Plan, error) {
	if err := residual.Validate(); err != nil {
		return nil, err
	}
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	if err := opts.Select.Validate(); err != nil {
		return nil, err
	}
	sum, err := Inspect(m, opts.Shapes)
	if err != nil {
		return nil, err
	}
	cands, err := FindCandidatesWith(m, opts.Shapes, opts.Candidates)
	if err != nil {
		return nil, err
	}
	if err := opts.Select.checkRanks(cands); err != nil {
		return nil, err
	}
	ix := newGraphIndex(m.GetGraph())
	p := &Plan{Residual: residual, ParamsBefore: sum.Params, MACsBefore: sum.MACs, ParamsAfter: sum.Params, MACsAfter: sum.MACs}
	var jobs []svd.Job
	var jobLayer []int
	for _, c := range cands {
		w, b, err := foldedWeights(ix, &c)
		if err != nil {
			return nil, err
		}
		kind := layerResidual(residual, c)
		lp := LayerPlan{Candidate: c, Residual: kind, W: w, Bias: b}
		C, in := int64(c.Channels), c.InputChannels()
		lp.ParamsBefore = C * int64(in) // both come from weight dims that hold data
		if c.Bias != "" {
			lp.ParamsBefore += C
		}
		lp.MACsBefore = checked.SatMul(C*int64(in), c.Pixels)
		if c.BatchNorm >= 0 {
			lp.ParamsBefore += 4 * C
			lp.MACsBefore = checked.SatAdd(lp.MACsBefore, checked.SatMul(C, c.Pixels))
		}
		lp.ParamsAfter, lp.MACsAfter = lp.ParamsBefore, lp.MACsBefore
		var spectrum []float64
		if policy.NeedsSpectrum() {
			spectrum, err = svd.Spectrum(w, c.Channels, in, kind, opts.SVD)
			if err != nil {
				return nil, fmt.Errorf("layer %q: spectrum: %w", c.Name, err)
			}
		}
		dec, err := opts.Select.Decide(policy, c.Name, c.Channels, in, spectrum, kind.Params(c.Channels))
		if err != nil {
			return nil, err
		}
		r := dec.Rank
		lp.Rank, lp.Replace, lp.Excluded, lp.Reason = r, dec.Replace, dec.Excluded, dec.Reason
		if a := opts.ChannelAlign; lp.Replace && a > 1 && (c.Channels%a != 0 || in%a != 0) {
			lp.Replace = false
			lp.Reason = fmt.Sprintf("%d channels are not a multiple of %d: ONNX Runtime would run the module outside its blocked layout, slower than the original layer", c.Channels, a)
		}
		if lp.Replace {
			jobs = append(jobs, svd.Job{Name: c.Name, W: w, Out: c.Channels, In: in, Rank: r, Kind: kind})
			jobLayer = append(jobLayer, len(p.Layers))
			lp.ParamsAfter, lp.MACsAfter = moduleCost(c, r, kind, anyNonZero(b))
		}
		p.ParamsAfter += lp.ParamsAfter - lp.ParamsBefore
		p.MACsAfter = satShift(p.MACsAfter, lp.MACsAfter, lp.MACsBefore)
		p.Layers = append(p.Layers, lp)
	}
	if len(jobs) == 0 {
		return p, nil
	}
	fs, err := svd.FactorizeAll(ctx, jobs, opts.SVD, opts.Workers)
	if err != nil {
		return nil, err
	}
	for k, f := range fs {
		l := &p.Layers[jobLayer[k]]
		l.Factors = f
		l.RelErr = f.RelErr
	}
	// The exact totals come from the rewritten graph (shared tensors such
	// as a bias that several layers read make the per-layer sums inexact).
	out, err := Apply(m, p)
	if err != nil {
		return nil, err
	}
	after, err := Inspect(out, opts.Shapes)
	if err != nil {
		return nil, fmt.Errorf("inspect the rewritten model: %w", err)
	}
	p.ParamsAfter, p.MACsAfter = after.Params, after.MACs
	return p, nil
}

func anyNonZero(v []float32) bool {
	for _, x := range v {
		if x != 0 {
			return true
		}
	}
	return false
}

// moduleCost returns the parameters and MACs of an LPR module of rank r
// with the given residual replacing candidate c.
func moduleCost(c Candidate, r int, residual svd.ResidualKind, bias bool) (params, macs int64) {
	C, R, P := int64(c.Channels), int64(r), c.Pixels
	in := int64(c.InputChannels())
	params = R*(C+in) + int64(residual.Params(c.Channels))
	if bias {
		params += C
	}
	macs = checked.SatMul(R*(C+in), P)
	switch residual.Type {
	case svd.Diag:
		macs = checked.SatAdd(macs, checked.SatMul(C, P))
	case svd.Depthwise:
		macs = checked.SatAdd(macs, checked.SatMul(C*int64(residual.K*residual.K), P))
	}
	return params, macs
}

// satShift returns total − before + after for counts that may be saturated
// (math.MaxInt64): a saturated total stays saturated, since what it stood
// for is unknown.
func satShift(total, after, before int64) int64 {
	if checked.Saturated(total) || checked.Saturated(before) {
		return total
	}
	return checked.SatAdd(total-before, after)
}
