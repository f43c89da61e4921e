package convert

import (
	"testing"
)

// tinyNet is a hand-countable network on a dynamic-batch 3x16x16 input:
// 3x3 stride-2 conv (3->8, no bias), depthwise 3x3 (8, bias), 1x1 conv
// (8->8, bias; the only candidate), 1x1 conv 8->6 followed by
// BatchNormalization, global pooling and a 6->5 Gemm.
func tinyNet() (*builder, []string) {
	b := newBuilder(7)
	x := b.op("Conv", []string{"x", b.weight("stem", 0.3, 8, 3, 3, 3)}, aInts("strides", 2, 2), aInts("pads", 1, 1, 1, 1))
	x = b.op("Conv", []string{x, b.weight("dw", 0.3, 8, 1, 3, 3), b.weight("dwb", 0.1, 8)}, aInt("group", 8), aInts("pads", 1, 1, 1, 1))
	x = b.op("Conv", []string{x, b.weight("pw", 0.3, 8, 8, 1, 1), b.weight("pwb", 0.1, 8)})
	x = b.op("Conv", []string{x, b.weight("exp", 0.3, 6, 8, 1, 1)})
	x = b.op("BatchNormalization", []string{x, b.weight("g", 0.1, 6), b.weight("beta", 0.1, 6), b.weight("mu", 0.1, 6), b.floats("var", []int64{6}, ones32(6))})
	x = b.op("GlobalAveragePool", []string{x})
	x = b.op("Flatten", []string{x})
	x = b.op("Gemm", []string{x, b.weight("fc", 0.1, 5, 6), b.weight("fcb", 0.1, 5)}, aInt("transB", 1))
	return b, []string{x}
}

func TestInspectCountsByHand(t *testing.T) {
	b, outs := tinyNet()
	m := b.model(13, []int64{-1, 3, 16, 16}, outs...)
	for _, batch := range []int64{1, 4} {
		opts := ShapeOptions{}
		if batch != 1 {
			opts.InputShapes = map[string][]int64{"x": {batch, 3, 16, 16}}
		}
		s, err := Inspect(m, opts)
		if err != nil {
			t.Fatal(err)
		}
		// Per image: stem 8*8*8*3*9, depthwise 8*8*8*1*9, pointwise
		// 8*8*8*8, expansion 6*8*8*8, BN one per output element 6*8*8,
		// Gemm 5*6.
		want := []struct {
			op                  string
			kernel              int64
			group, cin, cout    int64
			params, macsPerItem int64
			candidate           bool
		}{
			{"Conv", 3, 1, 3, 8, 216, 13824, false},
			{"Conv", 3, 8, 8, 8, 80, 4608, false},
			{"Conv", 1, 1, 8, 8, 72, 4096, true},
			{"Conv", 1, 1, 8, 6, 48, 3072, false},
			{"BatchNormalization", 0, 1, 6, 6, 24, 384, false},
			{"Gemm", 0, 1, 6, 5, 35, 30, false},
		}
		if len(s.Layers) != len(want) {
			t.Fatalf("%d layers, want %d: %+v", len(s.Layers), len(want), s.Layers)
		}
		var params, macs int64
		for i, w := range want {
			l := s.Layers[i]
			if l.Op != w.op || l.Group != w.group || l.InChannels != w.cin || l.OutChannels != w.cout ||
				l.Params != w.params || l.MACs != w.macsPerItem*batch || l.Candidate != w.candidate {
				t.Errorf("batch %d layer %d: got %+v, want %+v", batch, i, l, w)
			}
			if w.kernel > 0 && (len(l.Kernel) != 2 || l.Kernel[0] != w.kernel || l.Kernel[1] != w.kernel) {
				t.Errorf("layer %d kernel %v, want %dx%d", i, l.Kernel, w.kernel, w.kernel)
			}
			params += w.params
			macs += w.macsPerItem * batch
		}
		if s.Params != params || s.MACs != macs {
			t.Errorf("batch %d: totals %d params, %d MACs; want %d, %d", batch, s.Params, s.MACs, params, macs)
		}
		if s.Candidates != 1 || s.Layers[2].BreakEvenRank != 3 || s.CandidateParams != 64 {
			t.Errorf("candidates %d, break-even %d, candidate params %d; want 1, 3, 64", s.Candidates, s.Layers[2].BreakEvenRank, s.CandidateParams)
		}
		if s.Layers[3].NotCandidate == "" {
			t.Errorf("8->6 1x1 conv should say why it is not a candidate")
		}
		if got := s.Layers[4].OutputShape; len(got) != 4 || got[0] != batch || got[1] != 6 || got[2] != 8 {
			t.Errorf("BN output shape %v", got)
		}
		if s.Opset != 13 || s.IRVersion != 7 || s.Producer != "lprconv-test" {
			t.Errorf("opset %d, IR %d, producer %q", s.Opset, s.IRVersion, s.Producer)
		}
	}
}

func TestBreakEvenRank(t *testing.T) {
	for _, tc := range []struct{ c, res, want int }{
		{8, 0, 3}, {58, 0, 28}, {128, 0, 63}, {1024, 0, 511}, {7, 0, 3},
		{128, 128, 63}, // diag: 63*256+128 < 16384
		{128, 9 * 128, 59},
		{1, 0, 0}, {2, 0, 0}, {3, 0, 1},
	} {
		got := BreakEvenRank(tc.c, tc.res)
		if got != tc.want {
			t.Errorf("BreakEvenRank(%d, %d) = %d, want %d", tc.c, tc.res, got, tc.want)
		}
		// the defining inequality holds at got and fails at got+1
		if got > 0 && got*2*tc.c+tc.res >= tc.c*tc.c || (got+1)*2*tc.c+tc.res < tc.c*tc.c {
			t.Errorf("BreakEvenRank(%d, %d) = %d breaks r*2C+res < C²", tc.c, tc.res, got)
		}
	}
}

func TestCandidateRules(t *testing.T) {
	b := newBuilder(3)
	x := b.op("Conv", []string{"x", b.weight("a", 0.3, 4, 4, 1, 1)})                          // candidate
	x = b.op("Conv", []string{x, b.weight("s", 0.3, 4, 4, 1, 1)}, aInts("strides", 2, 2))     // stride
	x = b.op("Conv", []string{x, b.weight("p", 0.3, 4, 4, 1, 1)}, aInts("pads", 1, 1, 1, 1))  // padding
	x = b.op("Conv", []string{x, b.weight("g", 0.3, 4, 2, 1, 1)}, aInt("group", 2))           // group
	x = b.op("Conv", []string{x, b.weight("d", 0.3, 4, 4, 1, 1)}, aInts("dilations", 2, 2))   // candidate
	x = b.op("Conv", []string{x, b.op("Identity", []string{b.weight("i", 0.3, 4, 4, 1, 1)})}) // candidate via Identity
	x = b.op("Conv", []string{x, b.op("Relu", []string{b.weight("r", 0.3, 4, 4, 1, 1)})})     // computed weight
	x = b.op("Conv", []string{x, b.weight("k", 0.3, 4, 4, 3, 3)}, aInts("pads", 1, 1, 1, 1))  // 3x3
	x = b.op("Conv", []string{x, b.weight("e", 0.3, 6, 4, 1, 1)})                             // 4->6
	m := b.model(13, []int64{1, 4, 6, 6}, x)
	cands, err := FindCandidates(m, ShapeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, c := range cands {
		got = append(got, c.Node)
		if c.Channels != 4 {
			t.Errorf("candidate %s has C=%d", c.Name, c.Channels)
		}
	}
	// node indices: Conv a=0, s=1, p=2, g=3, d=4, Identity=5, Conv i=6, ...
	want := []int{0, 4, 6}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("candidate nodes %v, want %v", got, want)
	}
	if cands[0].Pixels != 36 || cands[1].Pixels != 25 { // 6x6, then stride 2 (3x3) and pad 1 (5x5)
		t.Errorf("pixels %d, %d; want 36, 25", cands[0].Pixels, cands[1].Pixels)
	}
}
