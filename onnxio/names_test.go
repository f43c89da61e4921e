package onnxio

import (
	"testing"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// TestGraphNames checks that every kind of name a graph holds is taken and
// that Fresh skips taken names, including the ones it gave out.
func TestGraphNames(t *testing.T) {
	g := &onnxpb.GraphProto{
		Initializer: []*onnxpb.TensorProto{{Name: "w"}},
		Input:       []*onnxpb.ValueInfoProto{{Name: "x"}},
		Output:      []*onnxpb.ValueInfoProto{{Name: "y"}},
		ValueInfo:   []*onnxpb.ValueInfoProto{{Name: "h"}},
		Node: []*onnxpb.NodeProto{
			{Name: "conv", Input: []string{"x", "w", "dangling"}, Output: []string{"h"}},
			{Name: "relu", Input: []string{"h"}, Output: []string{"y"}},
		},
	}
	s := GraphNames(g)
	for _, n := range []string{"w", "x", "y", "h", "conv", "relu", "dangling"} {
		if !s[n] {
			t.Errorf("%q is not taken", n)
		}
	}
	for _, tc := range []struct{ base, want string }{
		{"new", "new"}, {"new", "new_1"}, {"conv", "conv_1"}, {"conv", "conv_2"}, {"w", "w_1"},
	} {
		if got := s.Fresh(tc.base); got != tc.want {
			t.Errorf("Fresh(%q) = %q, want %q", tc.base, got, tc.want)
		}
	}
}
