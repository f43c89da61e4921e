package finetune

import (
	"fmt"
	"math"
	"strings"

	"github.com/lprconv/lprconv/engine"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// ParseFreeze parses a --freeze value: "" or "none", or comma-separated
// substrings of tensor names (Options.Freeze). "v" stands for
// "lpr_a.weight" (every module's first factor V, C -> r), "res" for
// "lpr_res.weight" (the diagonal residual).
func ParseFreeze(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "none") {
		return nil, nil
	}
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		switch strings.ToLower(f) {
		case "":
			return nil, fmt.Errorf("freeze %q: empty name", s)
		case "v":
			f = "lpr_a.weight"
		case "res":
			f = "lpr_res.weight"
		}
		out = append(out, f)
	}
	return out, nil
}

// withoutFrozen returns the names that contain none of the substrings of
// freeze, in order.
func withoutFrozen(names, freeze []string) []string {
	if len(freeze) == 0 {
		return names
	}
	var out []string
	for _, n := range names {
		frozen := false
		for _, f := range freeze {
			if strings.Contains(n, f) {
				frozen = true
				break
			}
		}
		if !frozen {
			out = append(out, n)
		}
	}
	return out
}

// l2spAnchors returns the anchor values of the trained tensors names for
// the L2-SP penalty: the initializers of the same names in anchor, or in
// student when anchor is nil.
func l2spAnchors(student, anchor *onnxpb.ModelProto, names []string) ([][]float32, error) {
	src := anchor
	if src == nil {
		src = student
	}
	sizes := map[string]int{}
	for _, t := range student.GetGraph().GetInitializer() {
		n := 1
		for _, d := range t.GetDims() {
			n *= int(d)
		}
		sizes[t.GetName()] = n
	}
	byName := map[string]*onnxpb.TensorProto{}
	for _, t := range src.GetGraph().GetInitializer() {
		byName[t.GetName()] = t
	}
	out := make([][]float32, len(names))
	for i, n := range names {
		t := byName[n]
		if t == nil {
			return nil, fmt.Errorf("l2-sp: the anchor model has no initializer %q", n)
		}
		v, err := onnxio.Float32s(t)
		if err != nil {
			return nil, fmt.Errorf("l2-sp: anchor %q: %w", n, err)
		}
		if len(v) != sizes[n] {
			return nil, fmt.Errorf("l2-sp: anchor %q has %d values, the student's has %d", n, len(v), sizes[n])
		}
		out[i] = v
	}
	return out, nil
}

// l2sp adds the gradient of the L2-SP penalty λ·Σ (p − a)² to g, writing
// g + 2λ(p − a) to out (which may be g), and returns the penalty. p, a, g
// and out have the same length.
func l2sp(lambda float64, p, a, g, out []float32) float64 {
	l, s := float32(2*lambda), 0.0
	for i, v := range p {
		d := float64(v) - float64(a[i])
		s += d * d
		out[i] = g[i] + l*(v-a[i])
	}
	return lambda * s
}

// samGrad replaces the gradients of the last Backward, g at θ, with those
// at θ + ρ·g/‖g‖ on the same batch (ρ = Options.SAMRho), and restores θ:
// SAM's ascent step, after the teacher's and the student's passes on
// batch. A zero gradient leaves the gradients as they are.
func (r *trainer) samGrad(batch *engine.Tensor, labels []int) error {
	if r.samSaved == nil {
		r.samSaved = make([][]float32, len(r.names))
	}
	sq := 0.0
	for _, n := range r.names {
		sq += sumSquares(r.sp.Grad(n))
	}
	if sq == 0 || math.IsNaN(sq) || math.IsInf(sq, 0) {
		return nil
	}
	scale := float32(r.opts.SAMRho / math.Sqrt(sq))
	for i, n := range r.names {
		p, g := r.sp.Param(n).F, r.sp.Grad(n)
		r.samSaved[i] = append(r.samSaved[i][:0], p...)
		for k := range p {
			p[k] += scale * g[k]
		}
	}
	_, seeds, err := r.studentLoss(batch, labels)
	if err == nil {
		if err = r.sp.Backward(seeds); err != nil {
			err = fmt.Errorf("distill: SAM backward: %w", err)
		}
	}
	for i, n := range r.names {
		copy(r.sp.Param(n).F, r.samSaved[i])
	}
	return err
}

// rankLRScales returns the learning-rate factor of each tensor of names
// (Options.RankLRRef, RankLRPower and LowRankLRBoost). A tensor of the LPR
// module of rank r and C output channels (the name up to "/lpr_" naming
// the module; r and C are the dimensions of its "<module>/lpr_a.weight"
// and "<module>/lpr_b.weight") gets
//
//	max(1, (ref/r)^power) · (boost where r ≤ FisherMaxRankFraction·C)
//
// (the first factor 1 when ref is 0, the second when boost is 0 or 1);
// tensors outside LPR modules keep factor 1.
func rankLRScales(student *onnxpb.ModelProto, names []string, ref, power, boost float64) ([]float64, error) {
	if ref < 0 || math.IsInf(ref, 0) || math.IsNaN(ref) || math.IsNaN(power) || math.IsInf(power, 0) {
		return nil, fmt.Errorf("rank-scaled lr: reference rank %v and power %v must be finite, the rank positive", ref, power)
	}
	if boost < 0 || math.IsInf(boost, 0) || math.IsNaN(boost) {
		return nil, fmt.Errorf("low-rank lr boost %v must be finite and not negative", boost)
	}
	ranks, channels := map[string]int{}, map[string]int{}
	for _, t := range student.GetGraph().GetInitializer() {
		if mod, ok := strings.CutSuffix(t.GetName(), "/lpr_a.weight"); ok && len(t.GetDims()) > 0 && t.GetDims()[0] > 0 {
			ranks[mod] = int(t.GetDims()[0])
		}
		if mod, ok := strings.CutSuffix(t.GetName(), "/lpr_b.weight"); ok && len(t.GetDims()) > 0 && t.GetDims()[0] > 0 {
			channels[mod] = int(t.GetDims()[0])
		}
	}
	out := make([]float64, len(names))
	for i, n := range names {
		out[i] = 1
		mod, _, ok := strings.Cut(n, "/lpr_")
		if !ok {
			continue
		}
		r := ranks[mod]
		if r == 0 {
			return nil, fmt.Errorf("rank-scaled lr: no %s/lpr_a.weight gives the rank of %q", mod, n)
		}
		if ref > 0 {
			out[i] = max(1, math.Pow(ref/float64(r), power))
		}
		if boost > 0 && float64(r) <= FisherMaxRankFraction*float64(channels[mod]) {
			out[i] *= boost
		}
	}
	return out, nil
}
