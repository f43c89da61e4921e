package dataset

import (
	"errors"
	"io"
	"reflect"
	"sort"
	"testing"
)

// eachBatch reads b into dst and labels until io.EOF, calling fn with the
// number of samples of each batch; any other error fails the test.
func eachBatch(t *testing.T, b Batches, dst []float32, labels []int, fn func(n int)) {
	t.Helper()
	for {
		n, err := b.Next(dst, labels)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		fn(n)
	}
}

// epochSamples runs one epoch and returns the sample index seen at each
// position (read back from the pixel values written by indexNPY) and checks
// that every label matches its sample.
func epochSamples(t *testing.T, l *Loader) []int {
	t.Helper()
	size := l.SampleSize()
	dst := make([]float32, l.BatchLen())
	labels := make([]int, l.opts.BatchSize)
	var seen []int
	batches := 0
	eachBatch(t, l, dst, labels, func(n int) {
		batches++
		for k := 0; k < n; k++ {
			id := int(dst[k*size])
			for _, v := range dst[k*size : (k+1)*size] {
				if v != float32(id) {
					t.Fatalf("batch %d sample %d mixes values %v and %v", batches, k, v, id)
				}
			}
			if labels[k] != 100+id {
				t.Fatalf("sample %d has label %d, want %d", id, labels[k], 100+id)
			}
			seen = append(seen, id)
		}
	})
	if batches != l.Batches() {
		t.Fatalf("%d batches, Batches() = %d", batches, l.Batches())
	}
	return seen
}

func openIndexNPY(t *testing.T, n int) Source {
	t.Helper()
	x, y := indexNPY(t, t.TempDir(), n, 1, 2, 3)
	src, err := OpenNPY(x, y)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func newTestLoader(t *testing.T, src Source, idx []int, o LoaderOptions) *Loader {
	t.Helper()
	l, err := NewLoader(src, idx, Preprocess{Channels: 1, Height: 2, Width: 3}, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func sorted(v []int) []int {
	out := append([]int(nil), v...)
	sort.Ints(out)
	return out
}

func TestLoaderOrder(t *testing.T) {
	src := openIndexNPY(t, 23)
	all := Indices(23)
	for _, mode := range []struct {
		name              string
		workers, prefetch int
	}{{"sync", 0, 0}, {"workers", 3, 0}, {"prefetch", 1, 2}, {"workers+prefetch", 2, 1}} {
		t.Run(mode.name, func(t *testing.T) {
			opts := func(shuffle, reshuffle bool, seed int64) LoaderOptions {
				return LoaderOptions{BatchSize: 5, Shuffle: shuffle, Reshuffle: reshuffle, Seed: seed, Workers: mode.workers, Prefetch: mode.prefetch}
			}
			plain := epochSamples(t, newTestLoader(t, src, nil, opts(false, false, 0)))
			if !reflect.DeepEqual(plain, all) {
				t.Fatalf("unshuffled order %v", plain)
			}
			a := newTestLoader(t, src, nil, opts(true, true, 7))
			a0, a1 := epochSamples(t, a), epochSamples(t, a)
			b := newTestLoader(t, src, nil, opts(true, true, 7))
			b0, b1 := epochSamples(t, b), epochSamples(t, b)
			c0 := epochSamples(t, newTestLoader(t, src, nil, opts(true, true, 8)))
			if !reflect.DeepEqual(a0, b0) || !reflect.DeepEqual(a1, b1) {
				t.Fatal("same seed gave different orders")
			}
			if reflect.DeepEqual(a0, c0) || reflect.DeepEqual(a0, a1) || reflect.DeepEqual(a0, all) {
				t.Fatalf("orders do not change with seed or epoch: %v %v %v", a0, a1, c0)
			}
			for _, e := range [][]int{a0, a1, c0} {
				if !reflect.DeepEqual(sorted(e), all) {
					t.Fatalf("epoch does not visit every sample once: %v", e)
				}
			}
			if a.Epoch() != 1 {
				t.Errorf("Epoch() = %d after two epochs, want 1", a.Epoch())
			}
			fixed := newTestLoader(t, src, nil, opts(true, false, 7))
			f0, f1 := epochSamples(t, fixed), epochSamples(t, fixed)
			if !reflect.DeepEqual(f0, f1) || reflect.DeepEqual(f0, all) {
				t.Fatalf("without Reshuffle epochs should repeat one shuffled order: %v %v", f0, f1)
			}
		})
	}
}

func TestLoaderDropLastAndSubset(t *testing.T) {
	src := openIndexNPY(t, 23)
	l := newTestLoader(t, src, nil, LoaderOptions{BatchSize: 5, DropLast: true})
	if got := epochSamples(t, l); len(got) != 20 || l.Batches() != 4 {
		t.Fatalf("DropLast: %d samples in %d batches, want 20 in 4", len(got), l.Batches())
	}
	sub := []int{22, 3, 9}
	l = newTestLoader(t, src, sub, LoaderOptions{BatchSize: 2})
	if got := epochSamples(t, l); !reflect.DeepEqual(got, sub) {
		t.Fatalf("subset order %v, want %v", got, sub)
	}
	if _, err := NewLoader(src, []int{23}, Preprocess{Channels: 1, Height: 1, Width: 1}, LoaderOptions{BatchSize: 1}); err == nil {
		t.Fatal("index out of range: no error")
	}
	if _, err := NewLoader(src, nil, Preprocess{Channels: 1, Height: 1, Width: 1}, LoaderOptions{}); err == nil {
		t.Fatal("batch size 0: no error")
	}
	if _, err := l.Next(make([]float32, 3), make([]int, 2)); err == nil {
		t.Fatal("short buffer: no error")
	}
}

func TestSubsetsAndSplit(t *testing.T) {
	idx := Indices(100)
	if got := First(idx, 3); !reflect.DeepEqual(got, []int{0, 1, 2}) {
		t.Errorf("First = %v", got)
	}
	r1, r2, r3 := Random(idx, 10, 1), Random(idx, 10, 1), Random(idx, 10, 2)
	if len(r1) != 10 || !reflect.DeepEqual(r1, r2) || reflect.DeepEqual(r1, r3) || !sort.IntsAreSorted(r1) {
		t.Errorf("Random: %v %v %v", r1, r2, r3)
	}
	if reflect.DeepEqual(r1, First(idx, 10)) {
		t.Errorf("Random picked the first 10")
	}
	for _, frac := range []float64{0, 0.1, 0.25, 1} {
		tr, va, err := SplitFraction(idx, frac, 5)
		if err != nil {
			t.Fatal(err)
		}
		tr2, va2, _ := SplitFraction(idx, frac, 5)
		if !reflect.DeepEqual(tr, tr2) || !reflect.DeepEqual(va, va2) {
			t.Fatalf("split %v not deterministic", frac)
		}
		if len(va) != int(frac*100+0.5) {
			t.Errorf("split %v: %d validation samples", frac, len(va))
		}
		seen := map[int]bool{}
		for _, v := range append(append([]int(nil), tr...), va...) {
			if seen[v] {
				t.Fatalf("split %v: %d in both parts", frac, v)
			}
			seen[v] = true
		}
		if len(seen) != 100 {
			t.Fatalf("split %v covers %d samples", frac, len(seen))
		}
	}
	if _, _, err := SplitFraction(idx, 1.5, 0); err == nil {
		t.Error("fraction 1.5: no error")
	}
}

func TestLoaderNoSteadyStateAllocations(t *testing.T) {
	src := openIndexNPY(t, 1000)
	for _, mode := range []struct{ workers, prefetch int }{{1, 0}, {2, 0}, {1, 2}} {
		l := newTestLoader(t, src, nil, LoaderOptions{BatchSize: 4, Workers: mode.workers, Prefetch: mode.prefetch})
		dst := make([]float32, l.BatchLen())
		labels := make([]int, 4)
		for range 3 { // warm up the per-worker buffers
			if _, err := l.Next(dst, labels); err != nil {
				t.Fatal(err)
			}
		}
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := l.Next(dst, labels); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 0 {
			t.Errorf("workers %d prefetch %d: %v allocations per batch, want 0", mode.workers, mode.prefetch, allocs)
		}
	}
}

// TestLoaderSeek checks that seeking to (epoch, batch) continues exactly the
// order a loader that read every earlier batch would follow.
func TestLoaderSeek(t *testing.T) {
	src := openIndexNPY(t, 23)
	for _, prefetch := range []int{0, 2} {
		opts := LoaderOptions{BatchSize: 5, Shuffle: true, Reshuffle: true, Seed: 3, Prefetch: prefetch}
		ref := newTestLoader(t, src, nil, opts)
		epochSamples(t, ref)
		e1 := epochSamples(t, ref)
		l := newTestLoader(t, src, nil, opts)
		if err := l.Seek(1, 2); err != nil {
			t.Fatal(err)
		}
		var got []int
		dst := make([]float32, l.BatchLen())
		eachBatch(t, l, dst, make([]int, 5), func(n int) {
			for k := 0; k < n; k++ {
				got = append(got, int(dst[k*l.SampleSize()]))
			}
		})
		if !reflect.DeepEqual(got, e1[10:]) {
			t.Fatalf("prefetch %d: after Seek(1, 2) got %v, want %v", prefetch, got, e1[10:])
		}
		if l.Epoch() != 1 {
			t.Fatalf("Epoch() = %d after Seek(1, 2)", l.Epoch())
		}
		if err := l.Seek(0, 99); err == nil {
			t.Fatal("Seek past the end accepted")
		}
	}
}
