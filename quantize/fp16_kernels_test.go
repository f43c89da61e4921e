package quantize

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
)

// TestFP16KernelList converts one float operator type at a time to float16
// in each fixture (and an LPR-compressed one, for Add) and loads and runs the result in ONNX Runtime: the types
// that fail must be exactly those in DefaultKeepFloat32 (among the types
// the fixtures use), and the others must run.
func TestFP16KernelList(t *testing.T) {
	testutil.RequireORT(t)
	keep := DefaultKeepFloat32()
	tested := map[string]bool{}
	for _, c := range []struct {
		name string
		lpr  bool
	}{{"mobilenetv1.onnx", false}, {"shufflenetv2.onnx", false}, {"mobilenetv1.onnx", true}} {
		name := c.name
		m := fixtureModel(t, name, c.lpr)
		_, all, err := ToFloat16(m, FP16Options{KeepFloat32: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range SortedOps(all.Converted) {
			if tested[op] {
				continue
			}
			tested[op] = true
			var others []string
			for o := range all.Converted {
				if o != op {
					others = append(others, o)
				}
			}
			h, _, err := ToFloat16(m, FP16Options{KeepFloat32: others})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), op+".onnx")
			if err := onnxio.Save(path, h, onnxio.SaveOptions{}); err != nil {
				t.Fatal(err)
			}
			lacks, err := lacksFP16Kernel(path, op)
			if err != nil {
				t.Errorf("%s: %s in float16: %v", name, op, err)
				continue
			}
			t.Logf("%s: %s float16 kernel: %v", name, op, !lacks)
			if lacks != slices.Contains(keep, op) {
				t.Errorf("%s: %s has a float16 kernel: %v, but DefaultKeepFloat32 says %v", name, op, !lacks, !slices.Contains(keep, op))
			}
		}
	}
}

// lacksFP16Kernel loads the model at path in ONNX Runtime (no optional
// optimizations) and reports whether ONNX Runtime had to insert Cast nodes
// around the float16 nodes of type op (its InsertCastTransformer does so
// for nodes that have no float16 kernel on the CPU provider): the
// optimized graph then holds more Cast nodes than the model.
func lacksFP16Kernel(path, op string) (bool, error) {
	opt := path + ".opt.onnx"
	s, err := ortrun.NewSession(path, ortrun.Options{Optimization: ortrun.OptDisabled, OptimizedModelPath: opt})
	if err != nil {
		return false, err
	}
	x := ortrun.Tensor{Shape: []int64{2, 3, 32, 32}, Data: make([]float32, 2*3*32*32)}
	_, err = s.Run(map[string]ortrun.Tensor{"input": x}, nil)
	s.Close()
	if err != nil {
		return false, err
	}
	casts := func(p string) (int, error) {
		m, err := onnxio.Load(p)
		if err != nil {
			return 0, err
		}
		n := 0
		for _, nd := range m.GetGraph().GetNode() {
			if nd.GetOpType() == "Cast" {
				n++
			}
		}
		return n, nil
	}
	before, err := casts(path)
	if err != nil {
		return false, err
	}
	after, err := casts(opt)
	if err != nil {
		return false, err
	}
	return after > before, nil
}
