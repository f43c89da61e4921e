package libpath

import (
	"os"
	"path/filepath"
	"testing"
)

func TestVersionLess(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"1.9.0", "1.24.3", true},
		{"1.24.3", "1.9.0", false},
		{"1.24.3", "1.24.3", false},
		{"1.24", "1.24.1", true},
		{"2.0.0", "1.99.99", false},
		{"1.24.3-rc", "1.24.3-rd", true},
	}
	for _, c := range cases {
		if got := versionLess(c.a, c.b); got != c.want {
			t.Errorf("versionLess(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func touch(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	ort := filepath.Join(dir, "lprconv", "ort")
	touch(t, filepath.Join(ort, "1.9.0", LibName))
	touch(t, filepath.Join(ort, "1.24.3", LibName))
	if err := os.MkdirAll(filepath.Join(ort, "9.9.9"), 0o755); err != nil { // no library inside
		t.Fatal(err)
	}
	if got := newest(ort); got != filepath.Join(ort, "1.24.3", LibName) {
		t.Errorf("newest = %q, want the 1.24.3 library", got)
	}
	if got := newest(filepath.Join(dir, "missing")); got != "" {
		t.Errorf("newest of a missing folder = %q, want empty", got)
	}

	lib := filepath.Join(dir, "custom.so")
	touch(t, lib)
	t.Setenv(EnvVar, lib)
	if got, err := Find(); err != nil || got != lib {
		t.Errorf("Find with $%s = %q, %v; want %q", EnvVar, got, err, lib)
	}
	t.Setenv(EnvVar, filepath.Join(dir, "absent.so"))
	if _, err := Find(); err == nil {
		t.Errorf("Find with $%s naming a missing file succeeded", EnvVar)
	}
	t.Setenv(EnvVar, dir)
	if _, err := Find(); err == nil {
		t.Errorf("Find with $%s naming a folder succeeded", EnvVar)
	}
}
