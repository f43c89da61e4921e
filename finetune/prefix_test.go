package finetune

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// fixtureStudent returns a committed fixture model and its data-free LPR
// student (fixturePlan applied).
func fixtureStudent(t *testing.T, name string) (teacher, student *onnxpb.ModelProto) {
	t.Helper()
	m, plan := fixturePlan(t, name)
	s, err := convert.Apply(m, plan)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

func marshal(t *testing.T, m *onnxpb.ModelProto) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSharedPrefixIsBitIdentical trains each fixture's student with the
// shared prefix (the student runs only its suffix, on the teacher's values
// of the boundary) and with the whole student, in Distill (logits+modules,
// with a validation pass per epoch choosing the best epoch) and in
// Reconstruct, at 1 and 2 threads: the students must be byte-identical,
// and the shared run must have shared nodes.
func TestSharedPrefixIsBitIdentical(t *testing.T) {
	for _, model := range []string{"mobilenetv1", "shufflenetv2"} {
		teacher, student := fixtureStudent(t, model)
		for _, stage := range []string{"distill", "reconstruct"} {
			for _, threads := range []int{1, 2} {
				t.Run(fmt.Sprintf("%s/%s/threads=%d", model, stage, threads), func(t *testing.T) {
					run := func(full bool) (*onnxpb.ModelProto, *Report) {
						o := distillOpts(6)
						o.Threads, o.StepsPerEpoch, o.fullStudent = threads, 3, full
						o.Match = []MatchSpec{{Kind: MatchLogits, Weight: 1}, {Kind: MatchModules, Weight: 1}}
						train := loader(t, "train", 200, 50, true)
						var out *onnxpb.ModelProto
						var rep *Report
						var err error
						if stage == "distill" {
							out, rep, err = Distill(context.Background(), teacher, student, Data{Train: train, Seek: train.Seek, Val: loader(t, "test", 100, 50, false)}, o)
						} else {
							out, rep, err = Reconstruct(context.Background(), teacher, student, train, o, 6)
						}
						if err != nil {
							t.Fatal(err)
						}
						return out, rep
					}
					shared, srep := run(false)
					full, frep := run(true)
					if srep.SharedNodes == 0 || frep.SharedNodes != 0 {
						t.Fatalf("shared nodes: %d with sharing, %d without", srep.SharedNodes, frep.SharedNodes)
					}
					if !bytes.Equal(marshal(t, shared), marshal(t, full)) {
						t.Errorf("the student trained on the shared prefix (%d nodes) differs from the one trained whole", srep.SharedNodes)
					}
					if srep.FinalLoss != frep.FinalLoss || len(srep.Epochs) != len(frep.Epochs) {
						t.Errorf("reports differ: loss %v vs %v, %d vs %d epochs", srep.FinalLoss, frep.FinalLoss, len(srep.Epochs), len(frep.Epochs))
					}
					for i := range min(len(srep.Epochs), len(frep.Epochs)) {
						if srep.Epochs[i].Agreement != frep.Epochs[i].Agreement {
							t.Errorf("epoch %d: validation agreement %v shared, %v whole", i, srep.Epochs[i].Agreement, frep.Epochs[i].Agreement)
						}
					}
					t.Logf("%d shared nodes, final loss %.6f", srep.SharedNodes, srep.FinalLoss)
				})
			}
		}
	}
}

// TestSharedPrefixBounds checks what findSharedPrefix shares and where it
// stops: before the first LPR module by default; nowhere when every
// tensor trains or when a value read after the forward pass is in the
// prefix; and before the first node whose initializer differs from the
// teacher's by value, even when its name and node are the same.
func TestSharedPrefixBounds(t *testing.T) {
	teacher, student := fixtureStudent(t, "mobilenetv1")
	shape := []int{8, 3, 32, 32}
	lpr := TrainableTensors(student, TrainLPR)
	firstLPR := -1
	for i, n := range student.Graph.Node {
		if strings.Contains(n.GetName(), "/lpr_") {
			firstLPR = i
			break
		}
	}
	// the teacher with the weight of the student's third node changed in
	// its last bit
	changed := proto.Clone(teacher).(*onnxpb.ModelProto)
	third := student.Graph.Node[2]
	for i, init := range changed.Graph.Initializer {
		for _, in := range third.GetInput() {
			if init.GetName() == in && len(init.GetDims()) > 1 {
				v := initializer(t, changed, in)
				v[0] = math.Float32frombits(math.Float32bits(v[0]) ^ 1)
				changed.Graph.Initializer[i] = onnxio.NewFloat32(in, init.GetDims(), v)
			}
		}
	}
	cases := []struct {
		name      string
		teacher   *onnxpb.ModelProto
		trainable []string
		need      []string
		nodes     int // -1: nothing shared
		reason    string
	}{
		{"lpr", teacher, lpr, ModuleOutputs(student), firstLPR, ""},
		{"all", teacher, TrainableTensors(student, TrainAll), nil, -1, "shares no node"},
		{"need in prefix", teacher, lpr, []string{student.Graph.Node[0].GetOutput()[0]}, -1, "computed by the shared prefix"},
		{"changed weight", changed, lpr, nil, 2, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pre, why := findSharedPrefix(c.teacher, student, "input", shape, c.trainable, c.need)
			if c.nodes < 0 {
				if pre != nil || !strings.Contains(why, c.reason) {
					t.Fatalf("shared %v, reason %q; want none because %q", pre != nil, why, c.reason)
				}
				return
			}
			if pre == nil {
				t.Fatalf("nothing shared: %s", why)
			}
			if pre.nodes != c.nodes {
				t.Errorf("shared %d nodes, want %d", pre.nodes, c.nodes)
			}
			if len(pre.suffix.Graph.Node)+pre.nodes != len(student.Graph.Node) {
				t.Errorf("suffix %d + prefix %d nodes != student %d", len(pre.suffix.Graph.Node), pre.nodes, len(student.Graph.Node))
			}
			for _, b := range pre.boundary {
				if s := pre.shapes[b]; len(s) == 0 || s[0] != shape[0] {
					t.Errorf("boundary %q has shape %v", b, s)
				}
			}
		})
	}
}
