package finetune

import (
	"errors"
	"io"
	"testing"

	"github.com/lprconv/lprconv/dataset"
)

// scripted is a Batches source that yields batches of the given sizes
// (0: io.EOF, -1: an error), writing its call number into every sample.
type scripted struct {
	sizes []int
	calls int
}

func (s *scripted) Next(dst []float32, labels []int) (int, error) {
	if s.calls >= len(s.sizes) {
		return 0, io.EOF
	}
	n := s.sizes[s.calls]
	s.calls++
	switch n {
	case 0:
		return 0, io.EOF
	case -1:
		return 0, errors.New("broken")
	}
	for i := range dst {
		dst[i] = float32(s.calls)
	}
	for i := range labels[:n] {
		labels[i] = s.calls
	}
	return n, nil
}

// TestBatchFeed checks that the feed returns the source's batches in
// order, with the source's counts and errors, and stops calling Next after
// the last full batch the run needs (so that a later stage on the same
// source starts where the step loop would have left it).
func TestBatchFeed(t *testing.T) {
	cases := []struct {
		name  string
		sizes []int
		need  int
		calls int // Next calls made after the feed has delivered need full batches
		err   bool
	}{
		{"full batches", []int{4, 4, 4, 4, 4}, 3, 3, false},
		{"short batch and epoch end", []int{4, 2, 0, 4, 4, 4}, 3, 5, false},
		{"error", []int{4, -1, 4}, 3, 2, true},
	}
	aug, err := dataset.NewAugmenter(dataset.Augment{}, 1, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := &scripted{sizes: c.sizes}
			f := startFeed(src, aug, 4, 2, 0, c.need)
			full, call := 0, 0
			for full < c.need {
				x, labels, n, err := f.next()
				call++
				if err != nil && !errors.Is(err, io.EOF) {
					if !c.err {
						t.Fatalf("call %d: %v", call, err)
					}
					break
				}
				if err == nil && (x[0] != float32(call) || labels[0] != call) {
					t.Fatalf("call %d: got batch %v, labels %v", call, x[0], labels[0])
				}
				if err == nil && n == 4 {
					full++
				}
			}
			f.close()
			if src.calls != c.calls {
				t.Errorf("the source saw %d calls, want %d", src.calls, c.calls)
			}
		})
	}
}

// TestForEach checks that forEach runs f exactly once for every index,
// whatever the number of workers.
func TestForEach(t *testing.T) {
	for _, c := range []struct{ workers, n int }{{1, 5}, {2, 0}, {2, 1}, {2, 7}, {4, 3}, {8, 100}} {
		counts := make([]int32, c.n)
		forEach(c.workers, c.n, func(i int) { counts[i]++ })
		for i, k := range counts {
			if k != 1 {
				t.Errorf("workers %d, n %d: index %d ran %d times", c.workers, c.n, i, k)
			}
		}
	}
}
