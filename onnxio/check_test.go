package onnxio

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

func TestFindCycle(t *testing.T) {
	// Each node is "inputs -> output".
	cases := []struct {
		name  string
		nodes [][2]string // comma-separated inputs, output
		want  string      // fmt of the cycle, or "[]"
	}{
		{"chain", [][2]string{{"x", "a"}, {"a", "b"}, {"b", "c"}}, "[]"},
		{"diamond", [][2]string{{"x", "a"}, {"a", "b"}, {"a", "c"}, {"b,c", "d"}}, "[]"},
		{"out of order, no cycle", [][2]string{{"b", "c"}, {"a", "b"}, {"x", "a"}}, "[]"},
		{"two-node cycle", [][2]string{{"b", "a"}, {"a", "b"}}, "[0 1]"},
		{"three-node cycle behind a DAG", [][2]string{{"x", "p"}, {"p,e", "c"}, {"c", "d"}, {"d", "e"}, {"e", "y"}}, "[1 3 2]"}, // 1 needs 3 needs 2 needs 1
		{"self loop", [][2]string{{"x,a", "a"}}, "[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var nodes []*onnxpb.NodeProto
			producer := map[string]int{}
			for i, n := range c.nodes {
				nodes = append(nodes, &onnxpb.NodeProto{Input: strings.Split(n[0], ","), Output: []string{n[1]}})
				producer[n[1]] = i
			}
			got := findCycle(nodes, producer)
			if fmt.Sprint(got) != c.want {
				t.Errorf("findCycle = %v, want %s", got, c.want)
			}
		})
	}
}
