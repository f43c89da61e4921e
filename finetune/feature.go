package finetune

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// MatchKind names what a MatchSpec matches.
type MatchKind int

const (
	// MatchLogits is the distillation loss (Options.Loss) on the output.
	MatchLogits MatchKind = iota
	// MatchPenultimate is the feature map the final global pooling reads:
	// the input of the last GlobalAveragePool, GlobalMaxPool or ReduceMean
	// of the student (the "mimicking" target of MiR).
	MatchPenultimate
	// MatchModules is the output of every LPR module (each replaced
	// layer's output value, present in both models).
	MatchModules
	// MatchTensor is one value named in both models.
	MatchTensor
)

// MatchSpec is one term of the distillation objective. Feature terms
// (every kind but MatchLogits) add the normalized squared error
//
//	Weight · Σ (s − t)² / Σ t²
//
// between the student's and the teacher's values s and t, summed over the
// batch; MatchModules splits its Weight evenly over the K module outputs,
// so that the term weighs Weight in total. MatchLogits adds
// Weight · Options.Loss. Feature terms use no labels.
type MatchSpec struct {
	Kind   MatchKind `json:"kind"`
	Name   string    `json:"name,omitempty"`
	Weight float64   `json:"weight"`
}

// DefaultMatchWeight is the weight of a term given without one.
const DefaultMatchWeight = 1.0

// ParseMatch parses a --match value: terms joined by '+' or ',', each
// logits (or kd), penultimate, modules, or a value name, optionally
// followed by =W for its weight (default 1). Example:
// "logits+penultimate=0.5". An empty string means logits only.
func ParseMatch(s string) ([]MatchSpec, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return []MatchSpec{{Kind: MatchLogits, Weight: DefaultMatchWeight}}, nil
	}
	var out []MatchSpec
	seen := map[string]bool{}
	for _, term := range strings.FieldsFunc(s, func(r rune) bool { return r == '+' || r == ',' }) {
		term = strings.TrimSpace(term)
		m := MatchSpec{Weight: DefaultMatchWeight}
		name := term
		if i := strings.LastIndex(term, "="); i > 0 {
			w, err := strconv.ParseFloat(term[i+1:], 64)
			if err != nil || !(w >= 0) || math.IsInf(w, 0) {
				return nil, fmt.Errorf("match %q: weight of %q must be a non-negative number", s, term[:i])
			}
			name, m.Weight = term[:i], w
		}
		switch strings.ToLower(name) {
		case "logits", "kd":
			m.Kind = MatchLogits
		case "penultimate":
			m.Kind = MatchPenultimate
		case "modules":
			m.Kind = MatchModules
		default:
			m.Kind, m.Name = MatchTensor, name
		}
		key := fmt.Sprint(m.Kind, m.Name)
		if seen[key] {
			return nil, fmt.Errorf("match %q: %q given twice", s, name)
		}
		seen[key] = true
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("match %q: no term", s)
	}
	return out, nil
}

// FormatMatch returns the ParseMatch spelling of specs ("logits" for none).
func FormatMatch(specs []MatchSpec) string {
	if len(specs) == 0 {
		return "logits"
	}
	var terms []string
	for _, m := range specs {
		t := m.Name
		switch m.Kind {
		case MatchLogits:
			t = "logits"
		case MatchPenultimate:
			t = "penultimate"
		case MatchModules:
			t = "modules"
		}
		if m.Weight != DefaultMatchWeight {
			t += "=" + strconv.FormatFloat(m.Weight, 'g', -1, 64)
		}
		terms = append(terms, t)
	}
	return strings.Join(terms, "+")
}

// featureTarget is one matched value with its weight.
type featureTarget struct {
	name   string
	weight float64
	grad   *engine.Tensor
	// chw weighs the value's channels (nil: all 1).
	chw []float32
}

// weighChannels gives the matched values found in w their channel
// weights (Options.ChannelWeights).
func (o *objective) weighChannels(w map[string][]float64) {
	for i := range o.features {
		f := &o.features[i]
		f.chw = nil
		if phi := w[f.name]; phi != nil {
			f.chw = make([]float32, len(phi))
			for c, v := range phi {
				f.chw[c] = float32(v)
			}
		}
	}
}

// objective is the resolved distillation objective of a run.
type objective struct {
	logits   float64 // weight of Options.Loss (0: not matched)
	features []featureTarget
	// per-step scratch of eval: each feature's loss and its student and
	// teacher values
	losses []float64
	vals   [][2][]float32
}

// resolveMatch turns specs into the values to observe in both models.
func resolveMatch(teacher, student *onnxpb.ModelProto, specs []MatchSpec) (*objective, error) {
	if len(specs) == 0 {
		return &objective{logits: 1}, nil
	}
	tvals := producedValues(teacher)
	svals := producedValues(student)
	ob := &objective{}
	index := map[string]int{}
	add := func(name string, w float64, what string) error {
		if !tvals[name] {
			return fmt.Errorf("match: %s value %q is not computed by the teacher", what, name)
		}
		if !svals[name] {
			return fmt.Errorf("match: %s value %q is not computed by the student", what, name)
		}
		if i, ok := index[name]; ok {
			ob.features[i].weight += w
			return nil
		}
		index[name] = len(ob.features)
		ob.features = append(ob.features, featureTarget{name: name, weight: w})
		return nil
	}
	for _, m := range specs {
		switch m.Kind {
		case MatchLogits:
			ob.logits += m.Weight
		case MatchPenultimate:
			name, err := PenultimateValue(student)
			if err != nil {
				return nil, err
			}
			if err := add(name, m.Weight, "penultimate"); err != nil {
				return nil, err
			}
		case MatchModules:
			mods := ModuleOutputs(student)
			mods = filterNames(mods, tvals)
			if len(mods) == 0 {
				return nil, fmt.Errorf("match: modules: the student has no LPR module whose output the teacher also computes")
			}
			for _, n := range mods {
				if err := add(n, m.Weight/float64(len(mods)), "module"); err != nil {
					return nil, err
				}
			}
		case MatchTensor:
			if err := add(m.Name, m.Weight, "named"); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("match: unknown kind %d", m.Kind)
		}
	}
	// Drop zero-weight features: they would cost a backward seed for nothing.
	kept := ob.features[:0]
	for _, f := range ob.features {
		if f.weight > 0 {
			kept = append(kept, f)
		}
	}
	ob.features = kept
	if ob.logits == 0 && len(ob.features) == 0 {
		return nil, fmt.Errorf("match %q: every term has weight 0", FormatMatch(specs))
	}
	return ob, nil
}

// names lists the matched feature values.
func (o *objective) names() []string {
	var out []string
	for _, f := range o.features {
		out = append(out, f.name)
	}
	return out
}

// eval adds the feature terms of the last forward passes of sp (student)
// and tp (teacher) to seeds and returns their loss, computing the terms
// through par (see trainer.parallel; the sum is taken in feature order, so
// the result does not depend on how par spreads the terms).
func (o *objective) eval(sp, tp valuer, seeds map[string]*engine.Tensor, par func(n, floats int, f func(i int))) (float64, error) {
	if len(o.losses) != len(o.features) {
		o.losses = make([]float64, len(o.features))
		o.vals = make([][2][]float32, len(o.features))
	}
	size := 0
	for i := range o.features {
		f := &o.features[i]
		s, t := sp.Value(f.name), tp.Value(f.name)
		if s == nil || t == nil || len(s.F) != len(t.F) {
			return 0, fmt.Errorf("match: value %q differs in size between student and teacher", f.name)
		}
		if f.grad == nil {
			f.grad = engine.NewTensor(s.Shape...)
		}
		if f.chw != nil && (len(s.Shape) < 2 || s.Shape[1] != len(f.chw)) {
			return 0, fmt.Errorf("match: value %q has shape %v; its %d channel weights need NCHW with %d channels", f.name, s.Shape, len(f.chw), len(f.chw))
		}
		o.vals[i] = [2][]float32{s.F, t.F}
		seeds[f.name] = f.grad
		size += len(s.F)
	}
	par(len(o.features), size, func(i int) {
		f := &o.features[i]
		if f.chw != nil {
			hw := len(o.vals[i][0]) / (f.grad.Shape[0] * len(f.chw))
			o.losses[i] = ChannelFeatureLoss(o.vals[i][0], o.vals[i][1], f.weight, f.chw, hw, f.grad.F)
			return
		}
		o.losses[i] = FeatureLoss(o.vals[i][0], o.vals[i][1], f.weight, f.grad.F)
	})
	total := 0.0
	for _, l := range o.losses {
		total += l
	}
	return total, nil
}

// valuer is a compiled model whose values can be read after a forward
// pass (engine.Program, engine.Batched).
type valuer interface {
	Value(name string) *engine.Tensor
}

// FeatureLoss returns w · Σ(s−t)² / Σt² (the denominator taken as 1 when
// t is all zero) and writes its gradient with respect to s,
// 2w·(s−t)/Σt², into grad. Normalizing by the teacher's energy makes the
// term independent of the scale of the activations, so weights of
// different tensors are comparable.
func FeatureLoss(s, t []float32, w float64, grad []float32) float64 {
	energy := featureEnergy(t)
	sum := 0.0
	k := 2 * w / energy
	for i, v := range s {
		d := float64(v) - float64(t[i])
		sum += d * d
		grad[i] = float32(k * d)
	}
	return w * sum / energy
}

// featureEnergy is Σ t², or 1 when t is all zero: the denominator of the
// feature losses.
func featureEnergy(t []float32) float64 {
	e := 0.0
	for _, v := range t {
		e += float64(v) * float64(v)
	}
	if e == 0 {
		return 1
	}
	return e
}

// ChannelFeatureLoss is FeatureLoss with the squared error of channel c
// weighed by chw[c]: for NCHW values s and t of len(chw) channels of hw
// values each, it returns
//
//	w · Σ_{n,c,p} chw[c]·(s − t)² / Σ t²
//
// (the denominator taken as 1 when t is all zero) and writes the gradient
// with respect to s, 2w·chw[c]·(s − t)/Σ t², into grad. With every chw[c]
// = 1 it is FeatureLoss.
func ChannelFeatureLoss(s, t []float32, w float64, chw []float32, hw int, grad []float32) float64 {
	energy := featureEnergy(t)
	c := len(chw)
	sum := 0.0
	k := 2 * w / energy
	for i, v := range s {
		cw := float64(chw[(i/hw)%c])
		d := float64(v) - float64(t[i])
		sum += cw * d * d
		grad[i] = float32(k * cw * d)
	}
	return w * sum / energy
}

// producedValues is the set of values a model's nodes compute.
func producedValues(m *onnxpb.ModelProto) map[string]bool {
	out := map[string]bool{}
	for _, n := range m.GetGraph().GetNode() {
		for _, o := range n.GetOutput() {
			if o != "" {
				out[o] = true
			}
		}
	}
	return out
}

func filterNames(names []string, keep map[string]bool) []string {
	var out []string
	for _, n := range names {
		if keep[n] {
			out = append(out, n)
		}
	}
	return out
}

// PenultimateValue returns the input of the model's last global pooling
// (GlobalAveragePool, GlobalMaxPool, or ReduceMean/ReduceMax, which
// classifier heads use over the spatial axes): the feature map the
// classifier sees before it is pooled.
func PenultimateValue(m *onnxpb.ModelProto) (string, error) {
	nodes := m.GetGraph().GetNode()
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		switch n.GetOpType() {
		case "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax":
			if len(n.GetInput()) > 0 && n.GetInput()[0] != "" {
				return n.GetInput()[0], nil
			}
		}
	}
	return "", fmt.Errorf("match: penultimate: the model has no global pooling (GlobalAveragePool, GlobalMaxPool, ReduceMean or ReduceMax); name the tensor to match instead")
}

// ModuleOutputs returns the output values of the student's LPR modules in
// graph order: the outputs of nodes named "<layer>/lpr_*" that no other
// LPR node of the same layer reads (each replaced layer's output keeps the
// original layer's name).
func ModuleOutputs(m *onnxpb.ModelProto) []string {
	type info struct {
		layer string
		order int
	}
	outs := map[string]info{}
	readBy := map[string]map[string]bool{} // value -> layers whose lpr nodes read it
	order := 0
	for _, n := range m.GetGraph().GetNode() {
		i := strings.Index(n.GetName(), "/lpr_")
		if i < 0 {
			continue
		}
		layer := n.GetName()[:i]
		for _, in := range n.GetInput() {
			if readBy[in] == nil {
				readBy[in] = map[string]bool{}
			}
			readBy[in][layer] = true
		}
		for _, o := range n.GetOutput() {
			outs[o] = info{layer, order}
			order++
		}
	}
	var names []string
	for o, inf := range outs {
		if !readBy[o][inf.layer] {
			names = append(names, o)
		}
	}
	sort.Slice(names, func(a, b int) bool { return outs[names[a]].order < outs[names[b]].order })
	return names
}

// evalLogits evaluates the logits term (loss weighted by o.logits) into
// grad; it returns 0 and leaves grad alone when the logits are not
// matched.
func (o *objective) evalLogits(l *Loss, s, t []float32, labels []int, classes int, grad []float32) (float64, error) {
	if o.logits == 0 {
		return 0, nil
	}
	loss, err := l.Eval(s, t, labels, classes, grad)
	if err != nil || o.logits == 1 {
		return loss, err
	}
	w := float32(o.logits)
	for i := range grad[:len(s)] {
		grad[i] *= w
	}
	return o.logits * loss, nil
}
