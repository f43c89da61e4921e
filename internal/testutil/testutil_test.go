package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that records Fatalf and Skipf instead of
// stopping the goroutine, so that the skip-or-fail policy can be tested.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *recorder) Skipf(format string, args ...any)  { r.skip = fmt.Sprintf(format, args...) }

func TestMissingPolicy(t *testing.T) {
	for _, tc := range []struct {
		ci        string
		wantFatal bool
	}{
		{"", false},
		{"0", true},
		{"false", true},
		{"1", true},
		{"true", true},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			t.Setenv("XDG_CACHE_HOME", t.TempDir())
			t.Setenv("HOME", t.TempDir())
			r := &recorder{TB: t}
			// An ImageNet model that exists nowhere.
			ImageNetModel(r, "no-such-model.onnx")
			if got := r.fatal != ""; got != tc.wantFatal {
				t.Errorf("fatal=%q skip=%q, want fatal=%v", r.fatal, r.skip, tc.wantFatal)
			}
			if r.fatal == "" && !strings.Contains(r.skip, "no-such-model.onnx") {
				t.Errorf("skip message %q does not name the model", r.skip)
			}
			// An ImageNet model present in the cache is found.
			p := filepath.Join(CacheDir(), "imagenet", "m.onnx")
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			r = &recorder{TB: t}
			if got := ImageNetModel(r, "m.onnx"); got != p || r.fatal != "" || r.skip != "" {
				t.Errorf("ImageNetModel = %q (fatal %q, skip %q), want %q", got, r.fatal, r.skip, p)
			}
		})
	}
}

func TestRepoRootAndFixture(t *testing.T) {
	root := RepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("RepoRoot = %s has no go.mod", root)
	}
	r := &recorder{TB: t}
	Fixture(r, "no-such-fixture.onnx")
	if !strings.Contains(r.fatal, "no-such-fixture.onnx") {
		t.Errorf("Fixture of a missing file: fatal %q, want a message naming it", r.fatal)
	}
}

func TestCheckONNXRejectsGarbage(t *testing.T) {
	RequirePythonONNX(t)
	p := filepath.Join(t.TempDir(), "bad.onnx")
	if err := os.WriteFile(p, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	CheckONNX(r, p)
	if !strings.Contains(r.fatal, "bad.onnx") {
		t.Errorf("CheckONNX on garbage: fatal %q, want a rejection naming the file", r.fatal)
	}
	good := "/usr/share/libonnx-testdata/data/node/test_relu/model.onnx"
	if _, err := os.Stat(good); err == nil {
		r = &recorder{TB: t}
		CheckONNX(r, good)
		if r.fatal != "" {
			t.Errorf("CheckONNX rejects the conformance model: %s", r.fatal)
		}
	}
}
