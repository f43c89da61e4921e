package ortapi

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// loadRuntime loads the library that testutil.RequireORT finds.
func loadRuntime(t *testing.T) *Runtime {
	t.Helper()
	rt, err := Load(testutil.RequireORT(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func TestLoad(t *testing.T) {
	rt := loadRuntime(t)
	if err := checkVersion(rt.Version()); err != nil {
		t.Errorf("Version() = %q: %v", rt.Version(), err)
	}
	if rt.Path() == "" {
		t.Error("Path() is empty")
	}
	// A second Load of the same library shares the process's environment.
	rt2, err := Load(rt.Path())
	if err != nil {
		t.Fatal(err)
	}
	if rt2.Version() != rt.Version() {
		t.Errorf("second Load: version %q, first %q", rt2.Version(), rt.Version())
	}
	rt2.Close()
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "libonnxruntime.so.1")
	if err := os.WriteFile(text, []byte("this is not a shared library\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "absent.so"), "absent.so"},
		{"directory", dir, "is a directory"},
		{"text file", text, text},
	}
	// A real shared library that is not ONNX Runtime: the C library.
	libc, _ := filepath.Glob("/lib/*-linux-gnu/libc.so.6")
	if len(libc) > 0 {
		cases = append(cases, struct{ name, path, want string }{"libc", libc[0], "OrtGetApiBase"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rt, err := Load(tc.path)
			if err == nil {
				rt.Close()
				t.Fatalf("Load(%s) succeeded, want an error", tc.path)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, tc.path) {
				t.Errorf("error %q does not name %q and the file", msg, tc.want)
			}
		})
	}
}

func TestCheckVersion(t *testing.T) {
	cases := []struct {
		v    string
		want string // "" for accepted
	}{
		{"1.24.3", ""},
		{"1.24.0", ""},
		{"1.30.1", ""},
		{"2.0.0", ""},
		{"1.23.2", "1.23.2 is too old"},
		{"1.9.0", "1.9.0 is too old"},
		{"0.99", "too old"},
		{"", "unrecognised"},
		{"one.two", "unrecognised"},
	}
	for _, tc := range cases {
		err := checkVersion(tc.v)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("checkVersion(%q) = %v, want nil", tc.v, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("checkVersion(%q) = %v, want an error with %q", tc.v, err, tc.want)
		}
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "lib.so")
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvVar, lib)
	if p, err := Find(""); err != nil || p != lib {
		t.Errorf("Find(\"\") with $%s = %q, %v; want %q", EnvVar, p, err, lib)
	}
	flag := filepath.Join(dir, "flag.so")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := Find(flag); err != nil || p != flag {
		t.Errorf("Find(flag) = %q, %v; the flag wins over $%s", p, err, EnvVar)
	}
	if _, err := Find(filepath.Join(dir, "nope.so")); err == nil || !strings.Contains(err.Error(), "--ort-lib") {
		t.Errorf("Find(missing flag) = %v, want an error naming --ort-lib", err)
	}
	if _, err := Open(filepath.Join(dir, "nope.so")); err == nil {
		t.Error("Open(missing) succeeded")
	}
}

// fixtureInputs returns seeded random float inputs for the model's
// non-initializer inputs, with dynamic dimensions set to batch.
func fixtureInputs(t *testing.T, m *onnxpb.ModelProto, batch int) (map[string]Tensor, map[string]*engine.Tensor, map[string][]int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(batch), 7))
	names, shapes := testutil.GraphInputs(m, batch)
	ortIn, engIn := map[string]Tensor{}, map[string]*engine.Tensor{}
	for _, name := range names {
		x := engine.NewTensor(shapes[name]...)
		for i := range x.F {
			x.F[i] = float32(rng.NormFloat64())
		}
		ortIn[name], engIn[name] = Tensor{Shape: testutil.Int64s(shapes[name]), Data: x.F}, x
	}
	return ortIn, engIn, shapes
}

// TestFixturesAgreeWithEngine runs every fixture in ONNX Runtime, loaded
// from the file and from its bytes, and in lprconv's engine, on the same
// inputs at batch 1 and 64: the outputs agree to 1e-4 relative max-abs
// (max|engine-ORT| / max|ORT|).
func TestFixturesAgreeWithEngine(t *testing.T) {
	rt := loadRuntime(t)
	for _, path := range testutil.Fixtures(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			m, err := onnxio.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			fromFile, err := rt.NewSessionFromFile(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer fromFile.Close()
			fromBytes, err := rt.NewSession(raw, Options{Optimization: OptBasic})
			if err != nil {
				t.Fatal(err)
			}
			defer fromBytes.Close()
			for _, batch := range []int{1, 64} {
				ortIn, engIn, shapes := fixtureInputs(t, m, batch)
				p, err := engine.Compile(m, engine.Options{InputShapes: shapes})
				if err != nil {
					t.Fatal(err)
				}
				want, err := p.Run(engIn)
				p.Close()
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range []*Session{fromFile, fromBytes} {
					got, err := s.Run(ortIn, nil)
					if err != nil {
						t.Fatal(err)
					}
					for _, o := range m.Graph.Output {
						g, w := got[o.Name], want[o.Name]
						if w == nil || len(g.Data) != len(w.F) {
							t.Fatalf("batch %d output %q: ORT shape %v, engine %v", batch, o.Name, g.Shape, w)
						}
						var maxDiff, maxRef float64
						for i, v := range g.Data {
							maxDiff = max(maxDiff, math.Abs(float64(v)-float64(w.F[i])))
							maxRef = max(maxRef, math.Abs(float64(v)))
						}
						rel := maxDiff / max(maxRef, 1e-30)
						if rel > 1e-4 || math.IsNaN(rel) {
							t.Errorf("batch %d output %q (%s): relative max-abs error %.3g > 1e-4", batch, o.Name, s.name, rel)
						}
					}
				}
			}
		})
	}
}

func TestSessionInfoAndOptimizedModel(t *testing.T) {
	rt := loadRuntime(t)
	path := testutil.Fixture(t, "mobilenetv1.onnx")
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, level := range []OptLevel{OptDisabled, OptBasic, OptExtended, OptAll} {
		t.Run(level.String(), func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "optimized.onnx")
			s, err := rt.NewSessionFromFile(path, Options{IntraOpThreads: 2, Optimization: level, OptimizedModelPath: dst})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ins, outs := s.Inputs(), s.Outputs()
			if len(ins) != 1 || ins[0].Name != m.Graph.Input[0].Name || ins[0].DataType != "float" || len(ins[0].Shape) != 4 {
				t.Errorf("inputs %+v, want the model's one 4-D float input %q", ins, m.Graph.Input[0].Name)
			}
			if len(outs) != len(m.Graph.Output) || outs[0].Name != m.Graph.Output[0].Name {
				t.Errorf("outputs %+v, want %q", outs, m.Graph.Output[0].Name)
			}
			opt, err := onnxio.Load(dst)
			if err != nil {
				t.Fatalf("optimized model: %v", err)
			}
			n, nOpt := len(m.Graph.Node), len(opt.Graph.Node)
			if level == OptDisabled && nOpt != n {
				t.Errorf("level disabled: optimized graph has %d nodes, the model %d", nOpt, n)
			}
			// Conv+Relu fusion (extended and above) removes nodes.
			if (level == OptExtended || level == OptAll) && nOpt >= n {
				t.Errorf("level %s: optimized graph has %d nodes, not fewer than the model's %d", level, nOpt, n)
			}
			if level == OptBasic && nOpt > n {
				t.Errorf("level basic: optimized graph has %d nodes, more than the model's %d", nOpt, n)
			}
		})
	}
}

func TestRunConcurrentAndErrors(t *testing.T) {
	rt := loadRuntime(t)
	path := testutil.Fixture(t, "shufflenetv2.onnx")
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSessionFromFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	in, _, _ := fixtureInputs(t, m, 2)
	want, err := s.Run(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	outs := make([]map[string]Tensor, 4)
	errs := make([]error, 4)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = s.Run(in, nil)
		}()
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		for name, w := range want {
			g := outs[i][name]
			for j := range w.Data {
				if g.Data[j] != w.Data[j] {
					t.Fatalf("concurrent run %d output %q[%d] = %g, want %g", i, name, j, g.Data[j], w.Data[j])
				}
			}
		}
	}
	name := m.Graph.Input[0].Name
	x := in[name]
	cases := []struct {
		label   string
		inputs  map[string]Tensor
		outputs []string
		want    string
	}{
		{"missing input", map[string]Tensor{}, nil, "missing input"},
		{"unknown input", map[string]Tensor{name: x, "z": x}, nil, `"z" is not an input`},
		{"unknown output", in, []string{"nope"}, `"nope" is not an output`},
		{"data length", map[string]Tensor{name: {Shape: x.Shape, Data: x.Data[1:]}}, nil, "values, got"},
		{"wrong rank", map[string]Tensor{name: {Shape: []int64{int64(len(x.Data))}, Data: x.Data}}, nil, "rank 1"},
		{"negative dim", map[string]Tensor{name: {Shape: []int64{-1, 3, 32, 32}, Data: x.Data}}, nil, "negative"},
	}
	for _, tc := range cases {
		if _, err := s.Run(tc.inputs, tc.outputs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.label, err, tc.want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(in, nil); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Run after Close: %v, want a 'session is closed' error", err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.onnx")
	if err := os.WriteFile(garbage, []byte("not an onnx model"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{garbage, filepath.Join(t.TempDir(), "absent.onnx")} {
		if _, err := rt.NewSessionFromFile(p, Options{}); err == nil || !strings.Contains(err.Error(), filepath.Base(p)) {
			t.Errorf("NewSessionFromFile(%s): %v, want an error naming the file", p, err)
		}
	}
	if _, err := rt.NewSession([]byte("not an onnx model"), Options{}); err == nil {
		t.Error("NewSession(garbage bytes) succeeded")
	}
}

// TestBoundInterleave times two fixture sessions through Bind and
// Interleave with both clocks; it checks the bookkeeping (rounds, samples,
// a ratio of a session to itself of exactly 1), never the times.
func TestBoundInterleave(t *testing.T) {
	rt := loadRuntime(t)
	path := testutil.Fixture(t, "mobilenetv1.onnx")
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	in, _, _ := fixtureInputs(t, m, 1)
	s, err := rt.NewSessionFromFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, err := s.Bind(in)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cpu, err := ProcessCPUClock()
	if err != nil {
		t.Fatal(err)
	}
	for _, clk := range []Clock{WallClock(), cpu} {
		tm, err := Interleave(TimingConfig{Warmup: 1, MinRounds: 4, MaxRounds: 6, Clock: clk}, b.Run, b.Run)
		if err != nil {
			t.Fatal(err)
		}
		if n := tm.Rounds(); n < 4 || n > 6 || len(tm.Samples) != 2 || len(tm.Samples[1]) != n {
			t.Errorf("rounds %d, samples %d x %d; want 4..6 rounds of 2", n, len(tm.Samples), len(tm.Samples[0]))
		}
		if r := tm.Ratio(0, 0); r.Median != 1 || r.N != tm.Rounds() {
			t.Errorf("ratio of a candidate to itself = %+v, want exactly 1 over every round", r)
		}
	}
	s.Close()
	if err := b.Run(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Bound.Run after the session's Close: %v, want a 'session is closed' error", err)
	}
}

// TestTimeModels times a fixture loaded from bytes against itself loaded
// from its file; it checks the bookkeeping, never the times.
func TestTimeModels(t *testing.T) {
	rt := loadRuntime(t)
	path := testutil.Fixture(t, "mobilenetv1.onnx")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	models := []Model{{Bytes: raw}, {Path: path}}
	tm, err := rt.TimeModels(models, LatencyOptions{Batch: 2, Sessions: 2, Timing: TimingConfig{Warmup: 1, MinRounds: 3, MaxRounds: 4}})
	if err != nil {
		t.Fatal(err)
	}
	if n := tm.Rounds(); n < 6 || n > 8 || len(tm.Samples) != 2 || len(tm.Samples[1]) != n {
		t.Errorf("%d rounds, samples %d x %d; want 3-4 rounds in each of 2 sets, for 2 models", n, len(tm.Samples), len(tm.Samples[0]))
	}
	fixed := testutil.Fixture(t, "shufflenetv2_op9.onnx")
	errCases := []struct {
		models []Model
		want   string
	}{
		{nil, "no models"},
		{[]Model{{Path: fixed}}, "fixes its batch size to 1"},
		{[]Model{{Path: path}, {Path: filepath.Join(t.TempDir(), "absent.onnx")}}, "absent.onnx"},
	}
	for _, tc := range errCases {
		if _, err := rt.TimeModels(tc.models, LatencyOptions{Batch: 2}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("TimeModels(%v): %v, want an error with %q", tc.models, err, tc.want)
		}
	}
}

// TestProfile: with ProfilePrefix, closing the session writes a trace with
// one kernel-time event per node run, each naming its operator.
func TestProfile(t *testing.T) {
	rt := loadRuntime(t)
	prefix := filepath.Join(t.TempDir(), "prof")
	s, err := rt.NewSessionFromFile(testutil.Fixture(t, "mobilenetv1.onnx"), Options{Optimization: OptDisabled, ProfilePrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	in := s.Inputs()[0]
	shape := []int64{2, in.Shape[1], in.Shape[2], in.Shape[3]}
	x := Tensor{Shape: shape, Data: make([]float32, shape[0]*shape[1]*shape[2]*shape[3])}
	const runs = 3
	for i := 0; i < runs; i++ {
		if _, err := s.Run(map[string]Tensor{in.Name: x}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(prefix + "*.json")
	if len(files) != 1 {
		t.Fatalf("profile files %v, want one", files)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var events []struct {
		Cat, Name string
		Args      struct {
			OpName string `json:"op_name"`
		}
	}
	if err := json.Unmarshal(data, &events); err != nil {
		t.Fatal(err)
	}
	m, err := onnxio.Load(testutil.Fixture(t, "mobilenetv1.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	convs := 0
	for _, e := range events {
		if e.Cat == "Node" && strings.HasSuffix(e.Name, "_kernel_time") && e.Args.OpName == "Conv" {
			convs++
		}
	}
	want := 0
	for _, n := range m.Graph.Node {
		if n.GetOpType() == "Conv" {
			want++
		}
	}
	if convs != runs*want {
		t.Errorf("%d Conv kernel events, want %d runs x %d Convs", convs, runs, want)
	}
}
