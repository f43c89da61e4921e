package main

import (
	"errors"
	"io"
	"testing"

	"github.com/lprconv/lprconv/dataset"
)

// TestLimitSamplesEveryClass checks that --limit on eval, compare and
// quantize draws its samples from the whole data set: the committed
// training folder lists its images class by class, so its first 50 images
// are all T-shirts.
func TestLimitSamplesEveryClass(t *testing.T) {
	spec := dataSpec{Path: fixtureTrain, Limit: 50, Pre: dataset.Preprocess{Channels: 3, Height: 32, Width: 32}}
	src, l, err := spec.open(10)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	defer l.Close()
	x := make([]float32, 10*3*32*32)
	labels := make([]int, 10)
	classes, n := map[int]bool{}, 0
	for {
		k, err := l.Next(x, labels)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range labels[:k] {
			classes[c] = true
		}
		n += k
	}
	if n != 50 || len(classes) < 8 {
		t.Errorf("--limit 50 read %d images of %d classes; want 50 from (nearly) all 10", n, len(classes))
	}
}
