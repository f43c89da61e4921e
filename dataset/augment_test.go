package dataset

import (
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseAugment(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Augment
		str  string
	}{
		{"", Augment{}, "none"},
		{"none", Augment{}, "none"},
		{"crop", Augment{CropPad: 4}, "crop"},
		{"crop2+flip", Augment{CropPad: 2, Flip: true}, "crop2+flip"},
		{"crop+flip+mixup", Augment{CropPad: 4, Flip: true, MixupAlpha: 0.4}, "crop+flip+mixup"},
		{"Flip + cutmix=0.5", Augment{Flip: true, CutMixAlpha: 0.5}, "flip+cutmix=0.5"},
		{"mixup=1+cutmix", Augment{MixupAlpha: 1, CutMixAlpha: 1}, "mixup=1+cutmix"},
		{"noise", Augment{Noise: 0.1}, "noise"},
		{"flip+noise=0.05", Augment{Flip: true, Noise: 0.05}, "flip+noise=0.05"},
	} {
		got, err := ParseAugment(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseAugment(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if s := got.String(); s != tc.str {
			t.Errorf("%+v.String() = %q, want %q", got, s, tc.str)
		}
		if back, err := ParseAugment(got.String()); err != nil || back != got {
			t.Errorf("ParseAugment(%q) does not round-trip: %+v, %v", got.String(), back, err)
		}
	}
	for _, bad := range []string{"rotate", "crop0", "cropx", "flip=1", "mixup=0", "mixup=-1", "cutmix=nan", "crop+", "noise=0", "noise=-0.1", "noise=inf"} {
		if _, err := ParseAugment(bad); err == nil {
			t.Errorf("ParseAugment(%q) accepted", bad)
		}
	}
}

// fixtureBatch reads the first n committed training images (3x32x32) with
// the given number of loader workers.
func fixtureBatch(t *testing.T, n, workers int) ([]float32, []int) {
	t.Helper()
	src, err := Open(filepath.Join("..", "testdata", "images", "train"), OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	pre := Preprocess{Channels: 3, Height: 32, Width: 32, Mean: []float32{0.286}, Std: []float32{0.353}}
	l, err := NewLoader(src, nil, pre, LoaderOptions{BatchSize: n, Shuffle: true, Seed: 3, Workers: workers, Prefetch: workers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	x := make([]float32, l.BatchLen())
	labels := make([]int, n)
	if _, err := l.Next(x, labels); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return x, labels
}

// TestAugmentDeterministic checks that the augmented batches depend only
// on the seed and the batch number, not on the loader's workers, and that
// another seed or batch gives other bytes.
func TestAugmentDeterministic(t *testing.T) {
	spec, err := ParseAugment("crop+flip+mixup+cutmix")
	if err != nil {
		t.Fatal(err)
	}
	run := func(workers int, seed, batch int64) ([]float32, []int) {
		x, labels := fixtureBatch(t, 32, workers)
		s := spec
		s.Seed = seed
		g, err := NewAugmenter(s, 3, 32, 32)
		if err != nil {
			t.Fatal(err)
		}
		// Two batches through one Augmenter: scratch reuse must not leak.
		y := append([]float32(nil), x...)
		if err := g.Apply(y, append([]int(nil), labels...), 32, batch+1); err != nil {
			t.Fatal(err)
		}
		if err := g.Apply(x, labels, 32, batch); err != nil {
			t.Fatal(err)
		}
		return x, labels
	}
	x1, l1 := run(1, 7, 3)
	x4, l4 := run(4, 7, 3)
	if !reflect.DeepEqual(x1, x4) || !reflect.DeepEqual(l1, l4) {
		t.Fatal("augmented batch depends on the loader's worker count")
	}
	orig, _ := fixtureBatch(t, 32, 1)
	if reflect.DeepEqual(x1, orig) {
		t.Fatal("augmentation changed nothing")
	}
	if x, _ := run(1, 8, 3); reflect.DeepEqual(x, x1) {
		t.Error("another seed gives the same batch")
	}
	if x, _ := run(1, 7, 4); reflect.DeepEqual(x, x1) {
		t.Error("another batch number gives the same batch")
	}
}

// TestAugmentTransforms checks each transform against exact identities.
func TestAugmentTransforms(t *testing.T) {
	const n, size = 16, 3 * 32 * 32
	orig, labels := fixtureBatch(t, n, 1)
	apply := func(spec string) ([]float32, []int) {
		a, err := ParseAugment(spec)
		if err != nil {
			t.Fatal(err)
		}
		a.Seed = 5
		g, err := NewAugmenter(a, 3, 32, 32)
		if err != nil {
			t.Fatal(err)
		}
		x, l := append([]float32(nil), orig...), append([]int(nil), labels...)
		if err := g.Apply(x, l, n, 0); err != nil {
			t.Fatal(err)
		}
		return x, l
	}
	img := func(x []float32, i int) []float32 { return x[i*size : (i+1)*size] }
	// Crop: every pixel comes from the same channel of the same image, at
	// most 4 pixels away on each axis.
	x, l := apply("crop")
	for i := 0; i < n; i++ {
		got, src := img(x, i), img(orig, i)
		for c := 0; c < 3; c++ {
			for y := 0; y < 32; y++ {
				for xx := 0; xx < 32; xx++ {
					v := got[c*1024+y*32+xx]
					found := false
					for dy := -4; dy <= 4 && !found; dy++ {
						for dx := -4; dx <= 4 && !found; dx++ {
							sy, sx := min(max(y+dy, 0), 31), min(max(xx+dx, 0), 31)
							found = src[c*1024+sy*32+sx] == v
						}
					}
					if !found {
						t.Fatalf("crop: image %d pixel (%d,%d,%d) = %v is not a nearby input pixel", i, c, y, xx, v)
					}
				}
			}
		}
	}
	if !reflect.DeepEqual(l, labels) {
		t.Error("crop changed labels")
	}
	// Flip: every image is itself or its mirror; both occur.
	x, _ = apply("flip")
	flipped := 0
	for i := 0; i < n; i++ {
		got, src := img(x, i), img(orig, i)
		same, mirror := true, true
		for row := 0; row < 3*32; row++ {
			for xx := 0; xx < 32; xx++ {
				same = same && got[row*32+xx] == src[row*32+xx]
				mirror = mirror && got[row*32+xx] == src[row*32+31-xx]
			}
		}
		if !same && !mirror {
			t.Fatalf("flip: image %d is neither itself nor its mirror", i)
		}
		if mirror && !same {
			flipped++
		}
	}
	if flipped == 0 || flipped == n {
		t.Errorf("flip mirrored %d of %d images", flipped, n)
	}
	// Mixup: each image is λ·x_i + (1−λ)·x_j for one j ≠ i and λ in [0,1].
	x, l = apply("mixup=1")
	for i := 0; i < n; i++ {
		ok := false
		for j := 0; j < n && !ok; j++ {
			if j == i {
				continue
			}
			a, b, got := img(orig, i), img(orig, j), img(x, i)
			// λ from the pixel where the two differ most.
			k, best := 0, 0.0
			for p := range a {
				if d := math.Abs(float64(a[p] - b[p])); d > best {
					k, best = p, d
				}
			}
			lam := float64(got[k]-b[k]) / float64(a[k]-b[k])
			if lam < -1e-4 || lam > 1+1e-4 {
				continue
			}
			ok = true
			for p := range a {
				if want := lam*float64(a[p]) + (1-lam)*float64(b[p]); math.Abs(want-float64(got[p])) > 1e-4 {
					ok = false
					break
				}
			}
			if ok && labels[i] != labels[j] && l[i] != -1 {
				t.Errorf("mixup: image %d mixed with another class keeps label %d", i, l[i])
			}
		}
		if !ok {
			t.Fatalf("mixup: image %d is not a mix of itself and another image", i)
		}
	}
	// CutMix: every pixel is the image's own or another image's pixel at
	// the same place, and the pasted pixels form a rectangle.
	x, _ = apply("cutmix")
	for i := 0; i < n; i++ {
		got, src := img(x, i), img(orig, i)
		y0, y1, x0, x1 := 32, -1, 32, -1
		for y := 0; y < 32; y++ {
			for xx := 0; xx < 32; xx++ {
				for c := 0; c < 3; c++ {
					if p := c*1024 + y*32 + xx; got[p] != src[p] {
						y0, y1, x0, x1 = min(y0, y), max(y1, y), min(x0, xx), max(x1, xx)
					}
				}
			}
		}
		if y1 < 0 {
			continue // empty box (λ near 1) or identical pixels
		}
		ok := false
		for j := 0; j < n && !ok; j++ {
			if j == i {
				continue
			}
			o := img(orig, j)
			ok = true
			for c := 0; c < 3 && ok; c++ {
				for y := 0; y < 32 && ok; y++ {
					for xx := 0; xx < 32 && ok; xx++ {
						p := c*1024 + y*32 + xx
						in := y >= y0 && y <= y1 && xx >= x0 && xx <= x1
						ok = (in && got[p] == o[p]) || (!in && got[p] == src[p])
					}
				}
			}
		}
		if !ok {
			t.Fatalf("cutmix: image %d is not a rectangle of another image pasted into itself", i)
		}
	}
	// None and a single image leave the batch alone.
	if x, _ := apply("none"); !reflect.DeepEqual(x, orig) {
		t.Error("none changed the batch")
	}
}

// TestAugmentNoise checks that noise is deterministic by seed and batch,
// leaves the other transforms' choices unchanged, and adds zero-mean
// values of the requested standard deviation.
func TestAugmentNoise(t *testing.T) {
	const n = 32
	run := func(spec string, seed, batch int64) []float32 {
		a, err := ParseAugment(spec)
		if err != nil {
			t.Fatal(err)
		}
		a.Seed = seed
		g, err := NewAugmenter(a, 3, 32, 32)
		if err != nil {
			t.Fatal(err)
		}
		x, labels := fixtureBatch(t, n, 1)
		if err := g.Apply(x, labels, n, batch); err != nil {
			t.Fatal(err)
		}
		return x
	}
	for _, sigma := range []float64{0.05, 0.3} {
		spec := fmt.Sprintf("crop1+flip+noise=%g", sigma)
		x := run(spec, 7, 3)
		if !reflect.DeepEqual(x, run(spec, 7, 3)) {
			t.Fatalf("%s: the same seed and batch give other bytes", spec)
		}
		if reflect.DeepEqual(x, run(spec, 8, 3)) || reflect.DeepEqual(x, run(spec, 7, 4)) {
			t.Errorf("%s: another seed or batch gives the same bytes", spec)
		}
		// The difference to the same crops and flips without noise is the
		// noise alone.
		base := run("crop1+flip", 7, 3)
		var sum, sq float64
		for i := range x {
			d := float64(x[i] - base[i])
			sum += d
			sq += d * d
		}
		cnt := float64(len(x))
		mean := sum / cnt
		sd := math.Sqrt(sq/cnt - mean*mean)
		// 98,304 draws: the standard error of the mean is sigma/313 and
		// that of the standard deviation sigma/443.
		if math.Abs(mean) > 5*sigma/313 || math.Abs(sd-sigma) > 5*sigma/443 {
			t.Errorf("%s: noise mean %.5f, standard deviation %.5f; want 0 and %g", spec, mean, sd, sigma)
		}
	}
}

func TestAugmentErrors(t *testing.T) {
	if _, err := NewAugmenter(Augment{}, 0, 32, 32); err == nil {
		t.Error("zero channels accepted")
	}
	if _, err := NewAugmenter(Augment{CropPad: -1}, 3, 32, 32); err == nil {
		t.Error("negative crop accepted")
	}
	for _, sd := range []float64{-0.1, math.NaN(), math.Inf(1)} {
		if _, err := NewAugmenter(Augment{Noise: sd}, 3, 32, 32); err == nil {
			t.Errorf("noise %v accepted", sd)
		}
	}
	g, err := NewAugmenter(Augment{Flip: true}, 3, 4, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Apply(make([]float32, 47), nil, 1, 0); err == nil {
		t.Error("short batch accepted")
	}
	if err := g.Apply(make([]float32, 96), []int{0}, 2, 0); err == nil {
		t.Error("short labels accepted")
	}
}
