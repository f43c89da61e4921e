package onnxio

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lprconv/lprconv/internal/atomicfile"
	"github.com/lprconv/lprconv/internal/inputfile"
	"github.com/lprconv/lprconv/internal/testutil"
)

// within runs f and fails the test when it does not return in time (a
// blocking open of a FIFO would otherwise hang the test run).
func within(t *testing.T, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("blocked (the goroutine stays blocked on the special file)")
		return nil
	}
}

// saveExternalModel writes mlpModel to dir/name with external data in
// dataName and returns the model path.
func saveExternalModel(t *testing.T, dir, name, dataName string) string {
	t.Helper()
	tmp := t.TempDir()
	if err := Save(filepath.Join(tmp, "m.onnx"), mlpModel(), SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	m, err := Decode(mustRead(t, filepath.Join(tmp, "m.onnx")))
	if err != nil {
		t.Fatal(err)
	}
	for _, lt := range allTensors(m) {
		for _, kv := range lt.t.ExternalData {
			if kv.GetKey() == "location" {
				kv.Value = dataName
			}
		}
	}
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, dataName), mustRead(t, filepath.Join(tmp, "m.onnx.data")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBadInputCorpusLoad is the model-input part of the hostile-input
// corpus (issue 11, cases 6 and 7): a FIFO or device as the model or as its
// external data file is refused at once with inputfile.ErrNotRegular,
// before any open that could block or any read without end.
func TestBadInputCorpusLoad(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the model path
	}{
		{"fifo as the model", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "pipe.onnx")
			testutil.Mkfifo(t, p)
			return p
		}},
		{"symlink to a fifo as the model", func(t *testing.T, dir string) string {
			testutil.Mkfifo(t, filepath.Join(dir, "pipe"))
			p := filepath.Join(dir, "link.onnx")
			if err := os.Symlink("pipe", p); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"/dev/zero as the model", func(t *testing.T, dir string) string {
			if _, err := os.Stat("/dev/zero"); err != nil {
				testutil.Skipf(t, "no /dev/zero: %v", err)
			}
			return "/dev/zero"
		}},
		{"fifo as the external data file", func(t *testing.T, dir string) string {
			p := saveExternalModel(t, dir, "m.onnx", "m.onnx.data")
			if err := os.Remove(filepath.Join(dir, "m.onnx.data")); err != nil {
				t.Fatal(err)
			}
			testutil.Mkfifo(t, filepath.Join(dir, "m.onnx.data"))
			return p
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.setup(t, t.TempDir())
			err := within(t, func() error { _, err := Load(p); return err })
			if !errors.Is(err, inputfile.ErrNotRegular) {
				t.Fatalf("Load: err = %v, want inputfile.ErrNotRegular", err)
			}
			if !strings.Contains(err.Error(), p) && !strings.Contains(err.Error(), "data file") {
				t.Errorf("error %q names neither the model nor its data file", err)
			}
		})
	}
}

// TestBadInputCorpusOutput is the output part of the corpus (issue 11,
// cases 2, 3 and 9): CheckOutput refuses every file a save would write that
// is an input, a special file, or exists without overwrite.
func TestBadInputCorpusOutput(t *testing.T) {
	type env struct {
		dir    string
		in     string   // input model
		inputs []string // LoadFiles' list
	}
	// load writes an input model at dir/in.onnx with its data in dataName.
	load := func(t *testing.T, dir, dataName string) env {
		p := saveExternalModel(t, dir, "in.onnx", dataName)
		_, files, err := LoadFiles(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 2 {
			t.Fatalf("LoadFiles lists %v, want the model and its data file", files)
		}
		return env{dir: dir, in: p, inputs: files}
	}
	ext := SaveOptions{ExternalData: true}
	for _, tc := range []struct {
		name      string
		setup     func(t *testing.T, e *env) string // returns OUT
		dataName  string                            // the input's data file
		opts      SaveOptions
		overwrite bool
		want      error  // nil: allowed
		role      string // the refused file's role
	}{
		{
			// Case 2: the input's own data file is OUT.data.
			name: "OUT.data is the input's data file", dataName: "out.onnx.data", opts: ext, overwrite: true,
			setup: func(t *testing.T, e *env) string { return filepath.Join(e.dir, "out.onnx") },
			want:  ErrOutputIsInput, role: "external data",
		},
		{
			name: "OUT.data is the input's data file, without external data", dataName: "out.onnx.data", overwrite: true,
			setup: func(t *testing.T, e *env) string { return filepath.Join(e.dir, "out.onnx") },
			want:  nil, // the save writes no data file
		},
		{
			name: "OUT is the input model", dataName: "in.onnx.data", overwrite: true,
			setup: func(t *testing.T, e *env) string { return e.in },
			want:  ErrOutputIsInput, role: "model",
		},
		{
			name: "OUT is the input's data file", dataName: "in.onnx.data", overwrite: true,
			setup: func(t *testing.T, e *env) string { return filepath.Join(e.dir, "in.onnx.data") },
			want:  ErrOutputIsInput, role: "model",
		},
		{
			name: "OUT is a symlink to the input", dataName: "in.onnx.data", overwrite: true,
			setup: func(t *testing.T, e *env) string {
				p := filepath.Join(e.dir, "link.onnx")
				if err := os.Symlink("in.onnx", p); err != nil {
					t.Fatal(err)
				}
				return p
			},
			want: ErrOutputIsInput, role: "model",
		},
		{
			name: "OUT is a hard link to the input", dataName: "in.onnx.data", overwrite: true,
			setup: func(t *testing.T, e *env) string {
				p := filepath.Join(e.dir, "hard.onnx")
				if err := os.Link(e.in, p); err != nil {
					testutil.Skipf(t, "no hard links here: %v", err)
				}
				return p
			},
			want: ErrOutputIsInput, role: "model",
		},
		{
			name: "OUT.data is the input model", dataName: "in.onnx.data", opts: ext, overwrite: true,
			setup: func(t *testing.T, e *env) string {
				// OUT = "in" makes OUT.data "in.data"; the input model is
				// renamed to match.
				p := filepath.Join(e.dir, "in.data")
				if err := os.Rename(e.in, p); err != nil {
					t.Fatal(err)
				}
				e.inputs[0] = p
				return filepath.Join(e.dir, "in")
			},
			want: ErrOutputIsInput, role: "external data",
		},
		{
			// Case 2, second half: an unrelated OUT.data exists.
			name: "unrelated OUT.data exists without overwrite", dataName: "in.onnx.data", opts: ext,
			setup: func(t *testing.T, e *env) string {
				writeData(t, filepath.Join(e.dir, "out.onnx.data"), 1)
				return filepath.Join(e.dir, "out.onnx")
			},
			want: ErrOutputExists, role: "external data",
		},
		{
			name: "unrelated OUT.data exists with overwrite", dataName: "in.onnx.data", opts: ext, overwrite: true,
			setup: func(t *testing.T, e *env) string {
				writeData(t, filepath.Join(e.dir, "out.onnx.data"), 1)
				return filepath.Join(e.dir, "out.onnx")
			},
			want: nil,
		},
		{
			name: "OUT exists without overwrite", dataName: "in.onnx.data",
			setup: func(t *testing.T, e *env) string {
				writeData(t, filepath.Join(e.dir, "out.onnx"), 1)
				return filepath.Join(e.dir, "out.onnx")
			},
			want: ErrOutputExists, role: "model",
		},
		{
			// Case 3.
			name: "OUT is /dev/full with overwrite", dataName: "in.onnx.data", overwrite: true,
			setup: func(t *testing.T, e *env) string {
				if _, err := os.Stat("/dev/full"); err != nil {
					testutil.Skipf(t, "no /dev/full: %v", err)
				}
				return "/dev/full"
			},
			want: atomicfile.ErrNotRegular, role: "model",
		},
		{
			name: "OUT is a fifo with overwrite", dataName: "in.onnx.data", overwrite: true,
			setup: func(t *testing.T, e *env) string {
				p := filepath.Join(e.dir, "pipe.onnx")
				testutil.Mkfifo(t, p)
				return p
			},
			want: atomicfile.ErrNotRegular, role: "model",
		},
		{
			name: "OUT.data is a fifo with overwrite", dataName: "in.onnx.data", opts: ext, overwrite: true,
			setup: func(t *testing.T, e *env) string {
				testutil.Mkfifo(t, filepath.Join(e.dir, "out.onnx.data"))
				return filepath.Join(e.dir, "out.onnx")
			},
			want: atomicfile.ErrNotRegular, role: "external data",
		},
		{
			name: "OUT is a folder with overwrite", dataName: "in.onnx.data", overwrite: true,
			setup: func(t *testing.T, e *env) string { return e.dir },
			want:  atomicfile.ErrNotRegular, role: "model",
		},
		{
			name: "OUT's folder does not exist", dataName: "in.onnx.data",
			setup: func(t *testing.T, e *env) string { return filepath.Join(e.dir, "no", "out.onnx") },
			want:  ErrOutputFolder, role: "model",
		},
		{
			name: "fresh OUT with external data", dataName: "in.onnx.data", opts: ext,
			setup: func(t *testing.T, e *env) string { return filepath.Join(e.dir, "out.onnx") },
			want:  nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := load(t, t.TempDir(), tc.dataName)
			out := tc.setup(t, &e)
			before := map[string][]byte{}
			for _, p := range e.inputs {
				before[p] = mustRead(t, p)
			}
			paths, err := CheckOutput(out, nil, tc.opts, e.inputs, tc.overwrite)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("CheckOutput: %v", err)
				}
				if want := OutputFiles(out, nil, tc.opts); len(paths) != len(want) || paths[0] != out {
					t.Fatalf("paths = %v, want %v", paths, want)
				}
				// The save it allowed leaves every input as it was.
				if err := Save(out, mlpModel(), tc.opts); err != nil {
					t.Fatal(err)
				}
				for p, b := range before {
					if string(mustRead(t, p)) != string(b) {
						t.Fatalf("saving to %s changed input %s", out, p)
					}
				}
				return
			}
			var oe *OutputError
			if !errors.Is(err, tc.want) || !errors.As(err, &oe) {
				t.Fatalf("CheckOutput: err = %v, want an *OutputError wrapping %v", err, tc.want)
			}
			if oe.Role != tc.role {
				t.Errorf("refused the %s file, want the %s file (%v)", oe.Role, tc.role, err)
			}
			if errors.Is(err, ErrOutputExists) && !strings.Contains(err.Error(), "--overwrite") {
				t.Errorf("error %q does not say how to replace the file", err)
			}
		})
	}
}

// TestSaveRefusesSpecialDestinations checks Save itself (case 3 and the
// data file of case 2): a device or FIFO as the model or data file is never
// written or replaced, and nothing is written when either is refused.
func TestSaveRefusesSpecialDestinations(t *testing.T) {
	dir := t.TempDir()
	fifoData := filepath.Join(dir, "a.onnx.data")
	testutil.Mkfifo(t, fifoData)
	err := within(t, func() error { return Save(filepath.Join(dir, "a.onnx"), mlpModel(), SaveOptions{ExternalData: true}) })
	if !errors.Is(err, atomicfile.ErrNotRegular) {
		t.Fatalf("Save with a FIFO as the data file: err = %v, want ErrNotRegular", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "a.onnx")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the model was written although its data file was refused (%v)", err)
	}
	fifoModel := filepath.Join(dir, "b.onnx")
	testutil.Mkfifo(t, fifoModel)
	err = within(t, func() error { return Save(fifoModel, mlpModel(), SaveOptions{ExternalData: true}) })
	if !errors.Is(err, atomicfile.ErrNotRegular) {
		t.Fatalf("Save to a FIFO: err = %v, want ErrNotRegular", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "b.onnx.data")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the data file was written although the model path was refused (%v)", err)
	}
	if fi, err := os.Lstat(fifoModel); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced (%v)", err)
	}
}

// TestSaveExternalCleansUpOnFailure is case 9: when writing the model fails
// after its external data was written (the disk filling up), the data file
// is removed and no temporary file is left.
func TestSaveExternalCleansUpOnFailure(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.onnx")
	full := errors.New("no space left on device")
	err := saveExternal(out, mlpModel(), SaveOptions{ExternalData: true}, MaxFileBytes, func(string, []byte) error { return full })
	if !errors.Is(err, full) {
		t.Fatalf("err = %v, want the write error", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind: %s", e.Name())
	}
}
