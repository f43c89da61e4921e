package convert

import (
	"context"
	"math/rand"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

// invertedResidual is a MobileNetV2-like block: a 1x1 expansion c -> 4c
// followed by a foldable BatchNormalization, a depthwise 3x3, a 1x1
// projection 4c -> c with bias, and a square 1x1 c -> c; plus a strided
// 1x1 (never a candidate).
func invertedResidual(c int64) *onnxpb.ModelProto {
	b := newBuilder(5)
	x := b.op("Conv", []string{"x", b.weight("stem", 0.4, c, 3, 3, 3)}, aInts("pads", 1, 1, 1, 1))
	e := b.op("Conv", []string{x, b.weight("expand", 0.3, 4*c, c, 1, 1)})
	e = b.op("BatchNormalization", []string{e, b.weight("g", 0.2, 4*c), b.weight("beta", 0.1, 4*c), b.weight("mu", 0.1, 4*c), b.floats("var", []int64{4 * c}, ones32(4*c))}, aFloat("epsilon", 1e-3))
	e = b.op("Relu", []string{e})
	e = b.op("Conv", []string{e, b.weight("dw", 0.4, 4*c, 1, 3, 3)}, aInt("group", 4*c), aInts("pads", 1, 1, 1, 1))
	p := b.op("Conv", []string{e, b.weight("project", 0.3, c, 4*c, 1, 1), b.weight("pb", 0.1, c)})
	y := b.op("Add", []string{p, x})
	y = b.op("Conv", []string{y, b.weight("square", 0.3, c, c, 1, 1)})
	y = b.op("Conv", []string{y, b.weight("strided", 0.3, 2*c, c, 1, 1)}, aInts("strides", 2, 2))
	return b.model(13, []int64{-1, 3, 6, 6}, y)
}

func TestNonSquareBreakEvenRank(t *testing.T) {
	for _, tc := range []struct{ out, in, want int }{
		{96, 16, 13}, // 13*112 = 1456 < 1536 <= 14*112
		{16, 96, 13}, // symmetric
		{8, 8, 3},    // square: the residual-free BreakEvenRank
		{1280, 320, 255},
		{2, 1, 0}, // 1*3 >= 2
		{0, 5, 0},
	} {
		got := NonSquareBreakEvenRank(tc.out, tc.in)
		if got != tc.want {
			t.Errorf("NonSquareBreakEvenRank(%d, %d) = %d, want %d", tc.out, tc.in, got, tc.want)
		}
		if got > 0 && (got*(tc.out+tc.in) >= tc.out*tc.in || (got+1)*(tc.out+tc.in) < tc.out*tc.in) {
			t.Errorf("NonSquareBreakEvenRank(%d, %d) = %d is not the largest rank below break-even", tc.out, tc.in, got)
		}
	}
	if got, want := NonSquareBreakEvenRank(8, 8), BreakEvenRank(8, 0); got != want {
		t.Errorf("square case %d, BreakEvenRank %d", got, want)
	}
}

func TestNonSquareCandidatesOptIn(t *testing.T) {
	m := invertedResidual(8)
	square, err := FindCandidates(m, ShapeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(square) != 1 || square[0].Channels != 8 || square[0].NonSquare() || square[0].InputChannels() != 8 {
		t.Fatalf("default candidates %+v, want the one square layer", square)
	}
	all, err := FindCandidatesWith(m, ShapeOptions{}, CandidateOptions{NonSquare: true})
	if err != nil {
		t.Fatal(err)
	}
	type io struct{ out, in int }
	var got []io
	for _, c := range all {
		got = append(got, io{c.Channels, c.InputChannels()})
	}
	want := []io{{32, 8}, {8, 32}, {8, 8}}
	if len(got) != len(want) {
		t.Fatalf("candidates %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("candidates %v, want %v", got, want)
		}
	}
	if all[0].BatchNorm < 0 {
		t.Errorf("expansion's BatchNormalization not found foldable")
	}
	s, err := Inspect(m, ShapeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	marked := map[string]int{}
	for _, l := range s.Layers {
		if l.NonSquareBreakEvenRank > 0 {
			marked[l.Name] = l.NonSquareBreakEvenRank
			if l.Candidate || l.NotCandidate == "" {
				t.Errorf("layer %s: candidate %v, not-candidate %q", l.Name, l.Candidate, l.NotCandidate)
			}
		}
	}
	if len(marked) != 2 || marked[all[0].Name] != NonSquareBreakEvenRank(32, 8) || marked[all[1].Name] != NonSquareBreakEvenRank(8, 32) {
		t.Errorf("non-square break-even ranks %v", marked)
	}
	if s.Candidates != 1 {
		t.Errorf("Inspect counts %d candidates, want 1 (non-square ones are opt-in)", s.Candidates)
	}
}

// TestNonSquareRewrite checks the rewrite of non-square layers: at full
// rank it reproduces the original in ONNX Runtime whatever the plan's
// residual (non-square layers fall back to none), and at a low rank it
// computes the original with each weight replaced by B A.
func TestNonSquareRewrite(t *testing.T) {
	testutil.RequireORT(t)
	m := invertedResidual(8)
	shape := []int64{2, 3, 6, 6}
	x := randomInput(rand.New(rand.NewSource(3)), shape...)
	want := runModel(t, save(t, m, "orig.onnx"), x, shape)
	opts := PlanOptions{Candidates: CandidateOptions{NonSquare: true}}
	for _, kind := range []svd.ResidualKind{svd.KindNone, svd.KindDiag, svd.KindIdentity} {
		t.Run("full/"+kind.String(), func(t *testing.T) {
			fo := opts
			fo.Select.Force = true
			p, err := NewPlan(context.Background(), m, fullRankPolicy(), kind, fo)
			if err != nil {
				t.Fatal(err)
			}
			if p.Replaced() != 3 {
				t.Fatalf("replaced %d layers, want 3", p.Replaced())
			}
			for _, l := range p.Layers {
				wantKind := kind
				if l.NonSquare() {
					wantKind = svd.KindNone
				}
				if l.Factors.Residual != wantKind || l.Residual != wantKind {
					t.Errorf("%s: residual %s, want %s", l.Name, l.Factors.Residual, wantKind)
				}
				if l.Rank != min(l.Channels, l.InputChannels()) {
					t.Errorf("%s: rank %d at ratio 1", l.Name, l.Rank)
				}
			}
			out := mustApply(t, m, p)
			checkRewrite(t, kind.String(), out, x, shape, want)
			md, ok, err := ReadMetadata(out)
			if err != nil || !ok || len(md.Layers) != 3 || md.Layers[0].InChannels != 8 || md.Layers[0].Channels != 32 || md.Layers[2].InChannels != 0 {
				t.Errorf("metadata %+v (%v, %v)", md, ok, err)
			}
		})
	}
	t.Run("rank2", func(t *testing.T) {
		p, err := NewPlan(context.Background(), m, svd.Policy{Rank: 2}, svd.KindDiag, opts)
		if err != nil {
			t.Fatal(err)
		}
		// The reference: the original graph with each replaced Conv (and
		// the BatchNormalization after it) computing B A x + b (+ d ⊙ x).
		ref := proto.Clone(m).(*onnxpb.ModelProto)
		drop := map[*onnxpb.NodeProto]bool{}
		for _, l := range p.Layers {
			if !l.Replace {
				t.Fatalf("%s kept at rank 2: %s", l.Name, l.Reason)
			}
			wantP := int64(2*(l.Channels+l.InputChannels()) + l.Residual.Params(l.Channels))
			if l.Bias != nil && anyNonZero(l.Bias) {
				wantP += int64(l.Channels)
			}
			if gotP, _ := l.CostAt(2); gotP != wantP || l.ParamsAfter != wantP {
				t.Errorf("%s: cost %d (plan %d), want %d", l.Name, gotP, l.ParamsAfter, wantP)
			}
			f := l.Factors
			w := make([]float32, f.Out*f.In)
			for o := 0; o < f.Out; o++ {
				for i := 0; i < f.In; i++ {
					var s float32
					for k := 0; k < f.Rank; k++ {
						s += f.B[o*f.Rank+k] * f.A[k*f.In+i]
					}
					if f.Diag != nil && o == i {
						s += f.Diag[o]
					}
					w[o*f.In+i] = s
				}
			}
			conv := ref.Graph.Node[l.Node]
			if l.BatchNorm >= 0 {
				drop[ref.Graph.Node[l.BatchNorm]] = true
			}
			wName, bName := l.Name+"/reconstructed", l.Name+"/reconstructed_bias"
			ref.Graph.Initializer = append(ref.Graph.Initializer,
				onnxio.NewFloat32(wName, []int64{int64(f.Out), int64(f.In), 1, 1}, w),
				onnxio.NewFloat32(bName, []int64{int64(f.Out)}, l.Bias))
			conv.Input = []string{l.Input, wName, bName}
			conv.Output = []string{l.Output}
		}
		var nodes []*onnxpb.NodeProto
		for _, n := range ref.Graph.Node {
			if !drop[n] {
				nodes = append(nodes, n)
			}
		}
		ref.Graph.Node = nodes
		out := mustApply(t, m, p)
		if p.ParamsAfter >= p.ParamsBefore {
			t.Errorf("params %d -> %d", p.ParamsBefore, p.ParamsAfter)
		}
		s, err := Inspect(out, ShapeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Params != p.ParamsAfter || s.MACs != p.MACsAfter {
			t.Errorf("plan says %d params %d MACs, graph has %d %d", p.ParamsAfter, p.MACsAfter, s.Params, s.MACs)
		}
		compareOutputs(t, "rank2", runModel(t, save(t, out, "lpr.onnx"), x, shape), runModel(t, save(t, ref, "ref.onnx"), x, shape), 1e-4)
	})
}

// exactNonSquareFactors places the exact rank-min(C_out, C_in) factors of
// every candidate of p: A = I, B = W when C_in <= C_out, else A = W, B = I
// (cheap where a full SVD of ImageNet-sized weights is not).
func exactNonSquareFactors(p *Plan) {
	for i := range p.Layers {
		l := &p.Layers[i]
		out, in := l.Channels, l.InputChannels()
		r := min(out, in)
		f := &svd.Factors{Rank: r, In: in, Out: out, Residual: svd.KindNone}
		if in <= out {
			f.A, f.B = make([]float32, r*in), append([]float32(nil), l.W...)
			for j := 0; j < r; j++ {
				f.A[j*in+j] = 1
			}
		} else {
			f.A, f.B = append([]float32(nil), l.W...), make([]float32, out*r)
			for j := 0; j < r; j++ {
				f.B[j*r+j] = 1
			}
		}
		l.Replace, l.Rank, l.Factors, l.Residual = true, r, f, svd.KindNone
	}
}

// TestImageNetMobileNetV2NonSquare rewrites the ImageNet-shaped
// MobileNetV2 (whose 1x1 convolutions all expand or project): at full rank
// it reproduces ONNX Runtime's outputs, and at ratio 1/4 it shrinks and
// still runs in ONNX Runtime.
func TestImageNetMobileNetV2NonSquare(t *testing.T) {
	testutil.RequireORT(t)
	if testing.Short() {
		testutil.Skip(t, "ImageNet-shaped MobileNetV2 rewrite is slow; run without -short")
	}
	m, feed, want := imageNetReference(t, "mobilenetv2.onnx", []int64{1, 3, 224, 224})
	opts := PlanOptions{Candidates: CandidateOptions{NonSquare: true}}
	t.Run("full", func(t *testing.T) {
		p, err := NewPlan(context.Background(), m, svd.Policy{Rank: 1}, svd.KindDiag, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Layers) < 30 {
			t.Fatalf("%d non-square candidates, want the 30+ expand/project layers", len(p.Layers))
		}
		exactNonSquareFactors(p)
		compareOutputs(t, "full rank", runFeed(t, save(t, mustApply(t, m, p), "full.onnx"), feed), want, 1e-4)
	})
	t.Run("ratio0.25", func(t *testing.T) {
		p, err := NewPlan(context.Background(), m, svd.Policy{Ratio: 0.25}, svd.KindDiag, opts)
		if err != nil {
			t.Fatal(err)
		}
		if p.Replaced() < 30 || p.ParamsAfter >= p.ParamsBefore || p.MACsAfter >= p.MACsBefore {
			t.Fatalf("replaced %d, params %d -> %d, MACs %d -> %d", p.Replaced(), p.ParamsBefore, p.ParamsAfter, p.MACsBefore, p.MACsAfter)
		}
		got := runFeed(t, save(t, mustApply(t, m, p), "r4.onnx"), feed)
		for name, v := range got {
			if len(v.Data) != len(want[name].Data) {
				t.Errorf("output %s has %d values, want %d", name, len(v.Data), len(want[name].Data))
			}
		}
		t.Logf("MobileNetV2 non-square at 1/4: %d layers, params %d -> %d, MACs %d -> %d", p.Replaced(), p.ParamsBefore, p.ParamsAfter, p.MACsBefore, p.MACsAfter)
	})
}
