package shapeinfer

import (
	"slices"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// TestRulesReject checks that every rule rejects what the ONNX
// specification forbids, repeated axes included, with an error that says
// why.
func TestRulesReject(t *testing.T) {
	x := []int64{2, 1, 3, 1}
	call := func(f func() error) func() error { return f }
	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"axis-range", call(func() error { _, err := NormAxis(4, 4); return err }), "out of range"},
		{"axis-range-negative", call(func() error { _, err := NormAxis(-5, 4); return err }), "out of range"},
		{"axes-repeated-after-normalizing", call(func() error { _, err := NormAxes([]int64{1, -3}, 4); return err }), "repeat"},
		{"slice-repeated-axes", call(func() error { _, err := Slice(x, []int64{0, 0}, []int64{1, 1}, []int64{0, -4}, nil); return err }), "repeat"},
		{"slice-step-0", call(func() error { _, err := Slice(x, []int64{0}, []int64{1}, nil, []int64{0}); return err }), "step is 0"},
		{"slice-lengths", call(func() error { _, err := Slice(x, []int64{0}, []int64{1, 2}, nil, nil); return err }), "ends"},
		{"squeeze-repeated", call(func() error { _, err := Squeeze(x, []int64{1, 1}); return err }), "repeat"},
		{"squeeze-not-1", call(func() error { _, err := Squeeze(x, []int64{0}); return err }), "cannot squeeze"},
		{"unsqueeze-repeated", call(func() error { _, err := Unsqueeze(x, []int64{0, -6}); return err }), "repeat"},
		{"reduce-repeated", call(func() error { _, _, err := Reduce(x, []int64{2, 2}, true, false); return err }), "repeat"},
		{"pad-repeated", call(func() error { _, err := Pad(x, []int64{1, 1, 1, 1}, []int64{0, 0}); return err }), "repeat"},
		{"transpose-not-permutation", call(func() error { _, _, err := Transpose(x, []int64{0, 0, 1, 2}); return err }), "permutation"},
		{"transpose-negative", call(func() error { _, _, err := Transpose(x, []int64{-1, 0, 1, 2}); return err }), "permutation"},
		{"flatten-axis-range", call(func() error { _, err := Flatten(x, -5); return err }), "out of range"},
		{"reshape-two-minus-one", call(func() error { _, err := Reshape(x, []int64{-1, -1}, false); return err }), "more than one -1"},
		{"reshape-count", call(func() error { _, err := Reshape(x, []int64{5}, false); return err }), "cannot reshape"},
		{"split-uneven", call(func() error { _, _, err := Split(x, 2, nil, 2, 0); return err }), "equal parts"},
		{"split-negative", call(func() error { _, _, err := Split(x, 2, []int64{4, -1}, 2, 0); return err }), "negative"},
		{"split-sum", call(func() error { _, _, err := Split(x, 2, []int64{1, 1}, 2, 0); return err }), "add up"},
		{"concat-off-axis", call(func() error { _, _, err := Concat([][]int64{{2, 3}, {3, 3}}, 1); return err }), "differ off axis"},
		{"broadcast", call(func() error { _, err := Broadcast([]int64{2, 3}, []int64{4}); return err }), "do not broadcast"},
		{"matmul-inner", call(func() error { _, err := MatMul([]int64{2, 3}, []int64{4, 5}); return err }), "inner dims"},
		{"gemm-c", call(func() error {
			_, _, _, err := Gemm([]int64{2, 3}, []int64{3, 4}, []int64{3, 1}, false, false)
			return err
		}), "does not broadcast"},
		{"window-negative-pads", call(func() error {
			_, err := NewWindow(node("pads", []int64{-1, 0, 0, 0}), []int64{4, 4}, []int64{3, 3}, false)
			return err
		}), "negative pads"},
		{"window-too-large", call(func() error { _, err := NewWindow(node("", nil), []int64{2, 2}, []int64{3, 3}, false); return err }), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// node is a Conv node with one integer-list attribute (none when name is
// empty).
func node(name string, ints []int64) *onnxpb.NodeProto {
	n := &onnxpb.NodeProto{OpType: "Conv"}
	if name != "" {
		n.Attribute = append(n.Attribute, &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INTS, Ints: ints})
	}
	return n
}

// TestRuleIdentities checks exact identities of the rules: Unsqueeze then
// Squeeze of the same axes, Flatten at every axis, Reshape's 0 and -1,
// Split then Concat, and a SAME window keeping ceil(in/stride).
func TestRuleIdentities(t *testing.T) {
	x := []int64{2, 3, 4, 5}
	for _, axes := range [][]int64{{0}, {4}, {-1}, {1, 3}, {0, 5, -4}} {
		u, err := Unsqueeze(x, axes)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Squeeze(u, axes)
		if err != nil || !slices.Equal(s, x) {
			t.Fatalf("Squeeze(Unsqueeze(%v, %v)) = %v, %v", x, axes, s, err)
		}
	}
	for a := int64(-4); a <= 4; a++ {
		f, err := Flatten(x, a)
		if err != nil || f[0]*f[1] != Size(x) {
			t.Fatalf("Flatten(%v, %d) = %v, %v", x, a, f, err)
		}
	}
	if r, err := Reshape(x, []int64{0, -1, 5}, false); err != nil || !slices.Equal(r, []int64{2, 12, 5}) {
		t.Fatalf("Reshape = %v, %v", r, err)
	}
	if r, err := Reshape([]int64{0, 3}, []int64{3, 0}, true); err != nil || !slices.Equal(r, []int64{3, 0}) {
		t.Fatalf("Reshape allowzero = %v, %v", r, err)
	}
	sizes, ax, err := Split(x, -2, nil, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	var parts [][]int64
	for _, s := range sizes {
		p := slices.Clone(x)
		p[ax] = s
		parts = append(parts, p)
	}
	if c, _, err := Concat(parts, int64(ax)); err != nil || !slices.Equal(c, x) {
		t.Fatalf("Concat(Split(%v)) = %v, %v", x, c, err)
	}
	n := &onnxpb.NodeProto{OpType: "Conv", Attribute: []*onnxpb.AttributeProto{
		{Name: "auto_pad", Type: onnxpb.AttributeProto_STRING, S: []byte("SAME_UPPER")},
		{Name: "strides", Type: onnxpb.AttributeProto_INTS, Ints: []int64{2, 3}},
	}}
	for in := int64(1); in <= 12; in++ {
		for _, ceil := range []bool{false, true} {
			w, err := NewWindow(n, []int64{in, in}, []int64{3, 2}, ceil)
			if err != nil {
				t.Fatal(err)
			}
			if w.Out[0] != (in+1)/2 || w.Out[1] != (in+2)/3 {
				t.Fatalf("SAME window over %d: out %v, want ceil(in/stride)", in, w.Out)
			}
		}
	}
}
