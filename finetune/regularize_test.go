package finetune

import (
	"context"
	"math"
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// TestL2SPGradient checks the L2-SP penalty's value and the gradient it
// adds against central finite differences in float64.
func TestL2SPGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	const n = 17
	p, a, g := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range p {
		p[i] = float32(rng.NormFloat64())
		a[i] = float32(rng.NormFloat64())
		g[i] = float32(rng.NormFloat64())
	}
	for _, lambda := range []float64{0.01, 0.7, 5} {
		penalty := func(p []float32) float64 {
			s := 0.0
			for i := range p {
				d := float64(p[i]) - float64(a[i])
				s += d * d
			}
			return lambda * s
		}
		out := make([]float32, n)
		if v, want := l2sp(lambda, p, a, g, out), penalty(p); math.Abs(v-want) > 1e-9*math.Max(1, want) {
			t.Errorf("λ=%v: penalty %v, want %v", lambda, v, want)
		}
		for i := range p {
			const h = 1e-2
			orig := p[i]
			p[i] = orig + h
			up := penalty(p)
			p[i] = orig - h
			down := penalty(p)
			p[i] = orig
			fd := (up - down) / (2 * h)
			got := float64(out[i] - g[i])
			if math.Abs(fd-got) > 1e-4*math.Max(1, math.Abs(fd)) {
				t.Errorf("λ=%v: added gradient [%d] = %v, finite difference %v", lambda, i, got, fd)
			}
		}
	}
	// In place (out = g), as the update may call it.
	gg := append([]float32(nil), g...)
	want := make([]float32, n)
	l2sp(0.3, p, a, g, want)
	l2sp(0.3, p, a, gg, gg)
	if !reflect.DeepEqual(gg, want) {
		t.Error("l2sp in place differs")
	}
}

func TestParseFreeze(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"none", nil},
		{"v", []string{"lpr_a.weight"}},
		{"v,res", []string{"lpr_a.weight", "lpr_res.weight"}},
		{"lpr_b.bias, V", []string{"lpr_b.bias", "lpr_a.weight"}},
	} {
		got, err := ParseFreeze(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseFreeze(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := ParseFreeze("v,,res"); err == nil {
		t.Error("empty name accepted")
	}
}

// lprStudent returns the MobileNetV1 fixture and its data-free LPR
// student (lprFixture).
func lprStudent(t *testing.T) (teacher, student *onnxpb.ModelProto) {
	t.Helper()
	teacher, plan := lprFixture(t)
	student, err := convert.Apply(teacher, plan)
	if err != nil {
		t.Fatal(err)
	}
	return teacher, student
}

// TestFreezeKeepsTensors checks that frozen tensors come out bit-unchanged
// while the others of the trained set learn.
func TestFreezeKeepsTensors(t *testing.T) {
	teacher, student := lprStudent(t)
	all := TrainableTensors(student, TrainLPR)
	for _, spec := range []string{"v", "v,res", "lpr_b"} {
		freeze, err := ParseFreeze(spec)
		if err != nil {
			t.Fatal(err)
		}
		o := distillOpts(4)
		o.Freeze = freeze
		tuned, rep, err := Distill(context.Background(), teacher, student, Data{Train: loader(t, "train", 200, 50, true)}, o)
		if err != nil {
			t.Fatal(err)
		}
		trained := map[string]bool{}
		for _, n := range rep.Trainable {
			trained[n] = true
		}
		nFrozen := 0
		for _, n := range all {
			isFrozen := false
			for _, f := range freeze {
				isFrozen = isFrozen || strings.Contains(n, f)
			}
			before, after := initializer(t, student, n), initializer(t, tuned, n)
			switch {
			case isFrozen:
				nFrozen++
				if trained[n] || !reflect.DeepEqual(before, after) {
					t.Errorf("freeze %q: %s trained (reported %v) or changed", spec, n, trained[n])
				}
			case !trained[n] || reflect.DeepEqual(before, after):
				t.Errorf("freeze %q: %s not trained (reported %v) or unchanged", spec, n, trained[n])
			}
		}
		if nFrozen == 0 || nFrozen == len(all) {
			t.Errorf("freeze %q froze %d of %d tensors", spec, nFrozen, len(all))
		}
	}
	o := distillOpts(1)
	o.Freeze = []string{"/lpr_"}
	if _, _, err := Distill(context.Background(), teacher, student, Data{Train: loader(t, "train", 100, 50, true)}, o); err == nil {
		t.Error("freezing every trainable tensor accepted")
	}
}

// TestL2SPPullsToAnchor trains from a student whose trained tensors are
// offset from an anchor model's: a strong L2-SP penalty brings them most
// of the way to the anchor, none leaves them about as far.
func TestL2SPPullsToAnchor(t *testing.T) {
	teacher, student := lprStudent(t)
	names := TrainableTensors(student, TrainLPR)
	anchor := proto.Clone(student).(*onnxpb.ModelProto)
	isTrained := map[string]bool{}
	for _, n := range names {
		isTrained[n] = true
	}
	rng := rand.New(rand.NewSource(4))
	for i, ti := range anchor.Graph.Initializer {
		if !isTrained[ti.GetName()] {
			continue
		}
		v, err := onnxio.Float32s(ti)
		if err != nil {
			t.Fatal(err)
		}
		for k := range v {
			if rng.Intn(2) == 0 {
				v[k] += 0.02
			} else {
				v[k] -= 0.02
			}
		}
		anchor.Graph.Initializer[i] = onnxio.NewFloat32(ti.GetName(), ti.GetDims(), v)
	}
	dist := func(m *onnxpb.ModelProto) float64 {
		s := 0.0
		for _, n := range names {
			a, b := initializer(t, m, n), initializer(t, anchor, n)
			for k := range a {
				d := float64(a[k] - b[k])
				s += d * d
			}
		}
		return math.Sqrt(s)
	}
	start := dist(student)
	for _, tc := range []struct {
		lambda  float64
		lo, hi  float64 // bounds of the distance after, as fractions of start
		comment string
	}{
		{0, 0.8, 2, "no penalty"},
		{100, 0, 0.5, "strong penalty"},
	} {
		o := distillOpts(20)
		o.LR = 2e-3
		o.L2SP, o.L2SPAnchor = tc.lambda, anchor
		tuned, _, err := Distill(context.Background(), teacher, student, Data{Train: loader(t, "train", 200, 50, true)}, o)
		if err != nil {
			t.Fatal(err)
		}
		d := dist(tuned)
		t.Logf("%s: distance to the anchor %.4f -> %.4f", tc.comment, start, d)
		if d < tc.lo*start || d > tc.hi*start {
			t.Errorf("%s (λ=%v): distance to the anchor %.4f from %.4f, want %.2f-%.2f of it", tc.comment, tc.lambda, d, start, tc.lo, tc.hi)
		}
	}
	// An anchor without the trained tensors is refused.
	o := distillOpts(1)
	o.L2SP, o.L2SPAnchor = 1, teacher
	if _, _, err := Distill(context.Background(), teacher, student, Data{Train: loader(t, "train", 100, 50, true)}, o); err == nil {
		t.Error("an anchor without the trained tensors accepted")
	}
	o.L2SP, o.L2SPAnchor = -1, nil
	if _, _, err := Distill(context.Background(), teacher, student, Data{Train: loader(t, "train", 100, 50, true)}, o); err == nil {
		t.Error("a negative L2-SP weight accepted")
	}
}

// TestSAMStep checks one SGD step with SAM against its definition, built
// from plain steps: g₀ = ∇L(θ₀) from a plain step, θ₁ = θ₀ + ρ·g₀/‖g₀‖,
// and the SAM step θ₀ − η·∇L(θ₁), with ∇L(θ₁) from a plain step at θ₁.
func TestSAMStep(t *testing.T) {
	teacher, student := lprStudent(t)
	names := TrainableTensors(student, TrainLPR)
	const lr, rho = 1e-2, 0.5
	step := func(m *onnxpb.ModelProto, rho float64) [][]float32 {
		o := distillOpts(1)
		o.LR, o.Optimizer, o.SAMRho = lr, OptimizerConfig{Kind: SGD}, rho
		out, _, err := Distill(context.Background(), teacher, m, Data{Train: loader(t, "train", 100, 50, true)}, o)
		if err != nil {
			t.Fatal(err)
		}
		vals := make([][]float32, len(names))
		for i, n := range names {
			vals[i] = initializer(t, out, n)
		}
		return vals
	}
	theta0 := make([][]float32, len(names))
	for i, n := range names {
		theta0[i] = initializer(t, student, n)
	}
	// grad returns (θ − after)/lr, the gradient a plain SGD step used.
	grad := func(theta, after [][]float32) [][]float32 {
		g := make([][]float32, len(theta))
		for i := range theta {
			g[i] = make([]float32, len(theta[i]))
			for k := range theta[i] {
				g[i][k] = (theta[i][k] - after[i][k]) / lr
			}
		}
		return g
	}
	g0 := grad(theta0, step(student, 0))
	sq := 0.0
	for _, g := range g0 {
		sq += sumSquares(g)
	}
	moved := proto.Clone(student).(*onnxpb.ModelProto)
	theta1 := make([][]float32, len(names))
	for i, n := range names {
		theta1[i] = make([]float32, len(theta0[i]))
		for k := range theta0[i] {
			theta1[i][k] = theta0[i][k] + float32(rho/math.Sqrt(sq))*g0[i][k]
		}
		for j, ti := range moved.Graph.Initializer {
			if ti.GetName() == n {
				moved.Graph.Initializer[j] = onnxio.NewFloat32(n, ti.GetDims(), theta1[i])
			}
		}
	}
	want := grad(theta1, step(moved, 0))
	got := grad(theta0, step(student, rho))
	var diff, norm, plain float64
	for i := range want {
		for k := range want[i] {
			d := float64(got[i][k] - want[i][k])
			diff += d * d
			norm += float64(want[i][k]) * float64(want[i][k])
			e := float64(g0[i][k] - want[i][k])
			plain += e * e
		}
	}
	diff, norm, plain = math.Sqrt(diff), math.Sqrt(norm), math.Sqrt(plain)
	t.Logf("‖g_SAM − ∇L(θ₁)‖ = %.3g, ‖∇L(θ₁)‖ = %.3g, ‖∇L(θ₀) − ∇L(θ₁)‖ = %.3g", diff, norm, plain)
	if diff > 0.02*norm || plain < 10*diff {
		t.Errorf("SAM's gradient is off the gradient at the ascent point by %.3g (its norm %.3g; the plain gradient is off by %.3g)", diff, norm, plain)
	}
}

// TestRankLR checks that one SGD step with the rank-scaled learning rate
// moves every trained tensor max(1, (ref/r)^power) times as far as a
// plain step, r the rank of its module.
func TestRankLR(t *testing.T) {
	teacher, err := onnxio.Load(testdata("models", "mobilenetv1.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	// every module at rank C/4 but the first, at C/2
	plan, err := convert.NewPlan(context.Background(), teacher, svd.Policy{Ratio: 0.25, Multiple: 1}, svd.KindDiag, convert.PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range plan.Layers {
		if l := &plan.Layers[i]; l.Replace {
			if l.Factors, err = svd.Factorize(l.W, l.Channels, l.InputChannels(), l.Channels/2, svd.KindDiag, svd.Options{Seed: 1}); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	student, err := convert.Apply(teacher, plan)
	if err != nil {
		t.Fatal(err)
	}
	names := TrainableTensors(student, TrainLPR)
	step := func(ref, power, boost float64) [][]float32 {
		o := distillOpts(1)
		o.LR, o.Optimizer, o.RankLRRef, o.RankLRPower, o.LowRankLRBoost = 1e-2, OptimizerConfig{Kind: SGD}, ref, power, boost
		out, _, err := Distill(context.Background(), teacher, student, Data{Train: loader(t, "train", 100, 50, true)}, o)
		if err != nil {
			t.Fatal(err)
		}
		d := make([][]float32, len(names))
		for i, n := range names {
			a, b := initializer(t, student, n), initializer(t, out, n)
			d[i] = make([]float32, len(a))
			for k := range a {
				d[i][k] = b[k] - a[k]
			}
		}
		return d
	}
	dim0 := func(name string) int {
		for _, ti := range student.Graph.Initializer {
			if ti.GetName() == name {
				return int(ti.GetDims()[0])
			}
		}
		t.Fatalf("no initializer %s", name)
		return 0
	}
	plain := step(0, 0, 0)
	for _, tc := range []struct{ ref, power, boost float64 }{{64, 0.5, 0}, {0, 0, 3}, {64, 0.5, 2}} {
		scaled := step(tc.ref, tc.power, tc.boost)
		factors := map[float64]bool{}
		for i, n := range names {
			mod, _, _ := strings.Cut(n, "/lpr_")
			r, c := dim0(mod+"/lpr_a.weight"), dim0(mod+"/lpr_b.weight")
			want := 1.0
			if tc.ref > 0 {
				want = max(1, math.Pow(tc.ref/float64(r), tc.power))
			}
			if tc.boost > 0 && 4*r <= c {
				want *= tc.boost
			}
			factors[want] = true
			for k := range plain[i] {
				// steps above 1e-4 are exact to a few float32 ulps of the
				// parameter (a few 1e-8 relative)
				if p := float64(plain[i][k]); math.Abs(p) > 1e-4 && math.Abs(float64(scaled[i][k])/p-want) > 1e-3*want {
					t.Fatalf("%+v: %s[%d] (rank %d of %d channels): step %g, plain %g, want factor %g", tc, n, k, r, c, scaled[i][k], p, want)
				}
			}
		}
		if len(factors) < 2 {
			t.Errorf("%+v: every module's factor is %v: the test cannot tell scaling per module", tc, factors)
		}
	}
	for _, bad := range []struct{ ref, power, boost float64 }{{16, math.NaN(), 0}, {-1, 1, 0}, {0, 0, math.Inf(1)}, {0, 0, -2}} {
		o := distillOpts(1)
		o.RankLRRef, o.RankLRPower, o.LowRankLRBoost = bad.ref, bad.power, bad.boost
		if _, _, err := Distill(context.Background(), teacher, student, Data{Train: loader(t, "train", 100, 50, true)}, o); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
