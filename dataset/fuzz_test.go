package dataset

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkOpened reads the first and last samples of a source that opened
// from a file of size bytes, and fails when its length could not have come
// from the file (a header that promised more than the file holds).
func checkOpened(t *testing.T, src Source, size int64, perSampleMin int64) {
	t.Helper()
	defer src.Close()
	n := src.Len()
	if n < 0 || (n > 0 && int64(n) > size/perSampleMin) {
		t.Fatalf("%d samples from a %d-byte file", n, size)
	}
	for _, i := range []int{0, n - 1} {
		if i < 0 {
			continue
		}
		s, err := src.Sample(i)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			continue
		}
		if len(s.Pix) != s.Channels*s.Height*s.Width {
			t.Fatalf("sample %d: %d values for %dx%dx%d", i, len(s.Pix), s.Channels, s.Height, s.Width)
		}
	}
}

// FuzzNPY opens arbitrary bytes as an NPY images file and as an NPY labels
// file. It fails on panics, multi-line errors, and lengths that the file
// cannot hold (a forged shape must never turn into an allocation).
func FuzzNPY(f *testing.F) {
	f.Add(npyBytes("<f4", []int{2, 1, 2, 2}, float32Bytes([]float32{1, 2, 3, 4, 5, 6, 7, 8})))
	f.Add(npyBytes("|u1", []int{1, 2, 2}, []byte{1, 2, 3, 4}))
	f.Add(npyBytes("<f4", []int{1 << 32, 1 << 32, 1 << 32}, nil))
	f.Add(npyBytes("<i8", []int{2}, int64Bytes([]int64{1, 2})))
	f.Add(npyBytes(">f4", []int{1 << 62, 1, 4, 4}, nil))
	small := npyBytes("<f4", []int{2, 1, 1, 1}, float32Bytes([]float32{1, 2}))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "x.npy")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if src, err := Open(p, OpenOptions{}); err == nil {
			checkOpened(t, src, int64(len(data)), 1)
		} else if strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error %q", err)
		}
		x := filepath.Join(dir, "small.npy")
		if err := os.WriteFile(x, small, 0o644); err != nil {
			t.Fatal(err)
		}
		if src, err := Open(x, OpenOptions{Labels: p}); err == nil {
			checkOpened(t, src, math.MaxInt64, 1)
		} else if strings.Contains(err.Error(), "\n") {
			t.Fatalf("labels: multi-line error %q", err)
		}
	})
}

// FuzzIDX opens arbitrary bytes as an IDX images file (raw and gzipped)
// and as its labels file, with the same checks as FuzzNPY.
func FuzzIDX(f *testing.F) {
	f.Add(idxBytes([]int{2, 2, 2}, []byte{1, 2, 3, 4, 5, 6, 7, 8}))
	f.Add(idxBytes([]int{2}, []byte{3, 4}))
	f.Add(idxBytes([]int{1 << 30, 64, 64}, nil))
	f.Add(idxBytes([]int{1 << 30, 1 << 30, 1 << 30}, nil))
	images := idxBytes([]int{2, 1, 1}, []byte{9, 8})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		for _, name := range []string{"x.idx", "x.idx.gz"} {
			b := data
			if strings.HasSuffix(name, ".gz") {
				b = gzipBytes(t, data)
			}
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if src, err := Open(p, OpenOptions{}); err == nil {
				checkOpened(t, src, int64(len(data)), 1)
			} else if strings.Contains(err.Error(), "\n") {
				t.Fatalf("%s: multi-line error %q", name, err)
			}
		}
		x := filepath.Join(dir, "images.idx")
		if err := os.WriteFile(x, images, 0o644); err != nil {
			t.Fatal(err)
		}
		if src, err := Open(x, OpenOptions{Labels: filepath.Join(dir, "x.idx")}); err == nil {
			checkOpened(t, src, math.MaxInt64, 1)
		} else if strings.Contains(err.Error(), "\n") {
			t.Fatalf("labels: multi-line error %q", err)
		}
	})
}
