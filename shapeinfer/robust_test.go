package shapeinfer

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// inferNoPanic runs Infer and reports a panic as an error; an ordinary
// error of Infer is a clean outcome and gives nil.
func inferNoPanic(m *onnxpb.ModelProto, opts Options) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	_, _ = Infer(m, opts) // only a panic matters here
	return nil
}

// TestMutatedModelsFailCleanly runs Infer over the conformance models
// whose operators all have rules, with randomly corrupted integer
// attributes, integer constants (axes, shapes, starts, pads...) and input
// shapes: every outcome must be a result or an error, never a panic.
func TestMutatedModelsFailCleanly(t *testing.T) {
	dirs, _ := filepath.Glob(filepath.Join(conformanceRoot, "test_*"))
	if len(dirs) == 0 {
		testutil.Skipf(t, "conformance data missing in %s (install Debian package libonnx-testdata)", conformanceRoot)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	small := func() int64 { return rng.Int64N(11) - 4 }
	tried := 0
	for _, dir := range dirs {
		orig, err := onnxio.Load(filepath.Join(dir, "model.onnx"))
		if err != nil {
			continue
		}
		ok := true
		for _, n := range orig.GetGraph().GetNode() {
			ok = ok && supported(n.GetOpType())
		}
		if !ok {
			continue
		}
		for trial := 0; trial < 8; trial++ {
			m := proto.Clone(orig).(*onnxpb.ModelProto)
			mutateInts := func(v []int64) []int64 {
				for i := range v {
					if rng.IntN(3) == 0 {
						v[i] = small()
					}
				}
				if rng.IntN(4) == 0 && len(v) > 0 {
					v = v[:len(v)-1]
				}
				return v
			}
			for _, n := range m.GetGraph().GetNode() {
				for _, a := range n.GetAttribute() {
					switch a.GetType() {
					case onnxpb.AttributeProto_INT:
						if rng.IntN(2) == 0 {
							a.I = small()
						}
					case onnxpb.AttributeProto_INTS:
						a.Ints = mutateInts(a.Ints)
					case onnxpb.AttributeProto_TENSOR:
						if a.GetT().GetDataType() == int32(onnxio.Int64) {
							if v, err := onnxio.Int64s(a.GetT()); err == nil {
								v = mutateInts(v)
								a.T = onnxio.NewInt64(a.GetT().GetName(), []int64{int64(len(v))}, v)
							}
						}
					}
				}
			}
			shapes := map[string][]int64{}
			for _, in := range m.GetGraph().GetInput() {
				var s []int64
				for range in.GetType().GetTensorType().GetShape().GetDim() {
					s = append(s, rng.Int64N(6))
				}
				if rng.IntN(3) > 0 {
					shapes[in.GetName()] = s
					if rng.IntN(2) == 0 { // an integer input known as a constant
						v := make([]int64, Size(s))
						for i := range v {
							v[i] = small()
						}
						m.Graph.Initializer = append(m.Graph.Initializer, onnxio.NewInt64(in.GetName(), s, v))
					}
				}
			}
			tried++
			if err := inferNoPanic(m, Options{InputShapes: shapes}); err != nil {
				t.Errorf("%s (trial %d): %v", filepath.Base(dir), trial, err)
			}
		}
	}
	if tried < 1000 {
		t.Errorf("only %d mutated models tried", tried)
	}
}
