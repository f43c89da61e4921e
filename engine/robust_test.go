package engine

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// TestMutatedModelsFailCleanly compiles and runs the conformance models of
// supported operators with randomly corrupted integer attributes and input
// shapes: every outcome must be a result or an ordinary error, never a
// panic caught as an internal error.
func TestMutatedModelsFailCleanly(t *testing.T) {
	dirs, _ := filepath.Glob(filepath.Join(conformanceRoot, "node", "test_*"))
	if len(dirs) == 0 {
		testutil.Skipf(t, "conformance data missing in %s (install Debian package libonnx-testdata)", conformanceRoot)
	}
	rng := rand.New(rand.NewPCG(21, 22))
	tried, compiled := 0, 0
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
		if err != nil {
			continue
		}
		orig, err := onnxio.Decode(data)
		if err != nil {
			continue
		}
		supported := true
		for _, n := range orig.Graph.Node {
			if _, ok := registry[n.OpType]; !ok {
				supported = false
			}
		}
		if !supported {
			continue
		}
		for trial := 0; trial < 6; trial++ {
			m := proto.Clone(orig).(*onnxpb.ModelProto)
			for _, n := range m.Graph.Node {
				for _, a := range n.Attribute {
					switch a.Type {
					case onnxpb.AttributeProto_INT:
						if rng.IntN(2) == 0 {
							a.I = rng.Int64N(9) - 3
						}
					case onnxpb.AttributeProto_INTS:
						for i := range a.Ints {
							if rng.IntN(3) == 0 {
								a.Ints[i] = rng.Int64N(9) - 3
							}
						}
						if rng.IntN(4) == 0 && len(a.Ints) > 0 {
							a.Ints = a.Ints[:len(a.Ints)-1]
						}
					}
				}
			}
			shapes := map[string][]int{}
			inits := map[string]bool{}
			for _, tp := range m.Graph.Initializer {
				inits[tp.Name] = true
			}
			for _, in := range m.Graph.Input {
				if inits[in.Name] {
					continue
				}
				var s []int
				for range in.GetType().GetTensorType().GetShape().GetDim() {
					s = append(s, rng.IntN(5))
				}
				if rng.IntN(3) > 0 {
					shapes[in.Name] = s
				}
			}
			tried++
			p, err := Compile(m, Options{Threads: 2, InputShapes: shapes})
			if err != nil {
				if strings.Contains(err.Error(), "internal error") {
					t.Errorf("%s: %v", filepath.Base(dir), err)
				}
				continue
			}
			inputs := map[string]*Tensor{}
			for _, name := range p.InputNames() {
				shape := p.InputShape(name)
				x := randTensor(rng, shape...)
				if !p.InputDType(name).IsFloat() {
					x = &Tensor{Shape: shape, DType: p.InputDType(name), I: make([]int64, sizeOf(shape))}
					for i := range x.I {
						x.I[i] = rng.Int64N(7) - 3
					}
				}
				inputs[name] = x
			}
			compiled++
			if _, err := p.Run(inputs); err != nil && strings.Contains(err.Error(), "internal error") {
				t.Errorf("%s: %v", filepath.Base(dir), err)
			}
			p.Close()
		}
	}
	t.Logf("%d mutated models: %d compiled and ran, the rest were rejected with errors", tried, compiled)
}
