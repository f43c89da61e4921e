package dataset

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFixtureImages checks the committed image fixtures (gray 32x32 PNGs in
// testdata/images/{train,test}/<index>_<name>/) when they are present.
func TestFixtureImages(t *testing.T) {
	for _, tc := range []struct {
		split string
		n     int
	}{{"test", 500}, {"train", 1000}} {
		t.Run(tc.split, func(t *testing.T) {
			dir := filepath.Join("..", "testdata", "images", tc.split)
			if _, err := os.Stat(dir); err != nil {
				t.Fatalf("committed fixture images are missing: %v", err)
			}
			checkFixtureDir(t, dir, tc.n)
		})
	}
}

// checkFixtureDir checks a folder of n gray 32x32 PNGs in 10 indexed classes.
func checkFixtureDir(t *testing.T, dir string, n int) {
	t.Helper()
	src, err := Open(dir, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Len() != n {
		t.Errorf("Len = %d, want %d", src.Len(), n)
	}
	classes := src.Classes()
	if len(classes) != 10 {
		t.Fatalf("%d classes %q, want 10", len(classes), classes)
	}
	for i, c := range classes {
		if c == "" {
			t.Errorf("class %d has no name", i)
		}
	}
	l, err := NewLoader(src, nil, Preprocess{Channels: 1, Height: 32, Width: 32}, LoaderOptions{BatchSize: 64, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dst := make([]float32, l.BatchLen())
	labels := make([]int, 64)
	counts := make([]int, 10)
	eachBatch(t, l, dst, labels, func(k int) {
		for _, lab := range labels[:k] {
			if lab < 0 || lab > 9 {
				t.Fatalf("label %d outside 0..9", lab)
			}
			counts[lab]++
		}
		for _, v := range dst[:k*1024] {
			if v < 0 || v > 1 {
				t.Fatalf("pixel %v outside [0,1]", v)
			}
		}
	})
	for c, k := range counts {
		if k == 0 {
			t.Errorf("class %d (%s) has no images", c, classes[c])
		}
	}
	s, err := src.Sample(0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Channels != 1 || s.Height != 32 || s.Width != 32 {
		t.Errorf("sample 0 shape %dx%dx%d, want 1x32x32", s.Channels, s.Height, s.Width)
	}
}
