package dataset

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Augment describes random input transforms applied to preprocessed NCHW
// float32 batches. In distillation every transform is valid, because the
// teacher labels the transformed image itself: the student learns to match
// the teacher on inputs it would otherwise never see.
//
// The zero value applies nothing. Transforms run in this order: crop,
// flip (both per image), then mixing two images of the batch (mixup or
// cutmix, one of them per batch when both are on), then noise.
type Augment struct {
	// CropPad, when positive, shifts every image by a random offset in
	// [-CropPad, CropPad] on both axes (a random crop of the image padded
	// by CropPad pixels); pixels shifted in replicate the nearest border
	// pixel, so the background of the image is continued.
	CropPad int `json:"crop_pad,omitempty"`
	// Flip mirrors half of the images left to right.
	Flip bool `json:"flip,omitempty"`
	// MixupAlpha, when positive, replaces each image x_i by
	// λ·x_i + (1−λ)·x_j, j a random other image of the batch and
	// λ ~ Beta(α, α) drawn per image.
	MixupAlpha float64 `json:"mixup_alpha,omitempty"`
	// CutMixAlpha, when positive, pastes into each image x_i a rectangle
	// of x_j covering the fraction 1−λ of its area, λ ~ Beta(α, α), at a
	// uniformly random centre (clipped to the image).
	CutMixAlpha float64 `json:"cutmix_alpha,omitempty"`
	// Noise, when positive, adds independent Gaussian noise of standard
	// deviation Noise to every value of every image, in the units of the
	// preprocessed input (after mean and std normalization). It draws
	// from its own random stream, so the other transforms' choices are
	// those of the same spec without noise.
	Noise float64 `json:"noise,omitempty"`
	// Seed makes every choice deterministic: batch k of a run with seed s
	// is transformed the same way whatever the loader's worker count.
	Seed int64 `json:"seed,omitempty"`
}

// Default transform strengths of ParseAugment's bare names.
const (
	DefaultCropPad     = 4
	DefaultMixupAlpha  = 0.4
	DefaultCutMixAlpha = 1.0
	DefaultNoise       = 0.1
)

// ParseAugment parses an --augment value: "none" (or ""), or transforms
// joined by '+': crop[N] (random shift of up to N pixels, default 4),
// flip, mixup[=A] (Beta(A,A), default 0.4), cutmix[=A] (default 1) and
// noise[=SIGMA] (Gaussian noise of standard deviation SIGMA in normalized
// units, default 0.1).
// Example: "crop+flip+mixup". The seed is left zero.
func ParseAugment(s string) (Augment, error) {
	var a Augment
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || s == "none" {
		return a, nil
	}
	for _, term := range strings.Split(s, "+") {
		name, val, hasVal := strings.Cut(strings.TrimSpace(term), "=")
		alpha := func(def float64) (float64, error) {
			if !hasVal {
				return def, nil
			}
			v, err := strconv.ParseFloat(val, 64)
			if err != nil || !(v > 0) || math.IsInf(v, 0) {
				return 0, fmt.Errorf("augment %q: %s wants a positive value, got %q", s, name, val)
			}
			return v, nil
		}
		var err error
		switch {
		case name == "flip" && !hasVal:
			a.Flip = true
		case name == "mixup":
			a.MixupAlpha, err = alpha(DefaultMixupAlpha)
		case name == "cutmix":
			a.CutMixAlpha, err = alpha(DefaultCutMixAlpha)
		case name == "noise":
			a.Noise, err = alpha(DefaultNoise)
		case strings.HasPrefix(name, "crop") && !hasVal:
			a.CropPad = DefaultCropPad
			if n := name[len("crop"):]; n != "" {
				p, perr := strconv.Atoi(n)
				if perr != nil || p < 1 {
					return Augment{}, fmt.Errorf("augment %q: crop%s: want cropN with N a positive number of pixels", s, n)
				}
				a.CropPad = p
			}
		default:
			return Augment{}, fmt.Errorf("augment %q: unknown transform %q (want none, or crop[N], flip, mixup[=A], cutmix[=A], noise[=SIGMA] joined by +)", s, term)
		}
		if err != nil {
			return Augment{}, err
		}
	}
	return a, nil
}

// Enabled reports whether a transforms anything.
func (a Augment) Enabled() bool {
	return a.CropPad > 0 || a.Flip || a.MixupAlpha > 0 || a.CutMixAlpha > 0 || a.Noise > 0
}

// String returns the ParseAugment spelling (without the seed).
func (a Augment) String() string {
	if !a.Enabled() {
		return "none"
	}
	var terms []string
	if a.CropPad > 0 {
		if a.CropPad == DefaultCropPad {
			terms = append(terms, "crop")
		} else {
			terms = append(terms, fmt.Sprintf("crop%d", a.CropPad))
		}
	}
	if a.Flip {
		terms = append(terms, "flip")
	}
	add := func(name string, v, def float64) {
		if v == def {
			terms = append(terms, name)
		} else if v > 0 {
			terms = append(terms, name+"="+strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	add("mixup", a.MixupAlpha, DefaultMixupAlpha)
	add("cutmix", a.CutMixAlpha, DefaultCutMixAlpha)
	add("noise", a.Noise, DefaultNoise)
	return strings.Join(terms, "+")
}

// Augmenter applies an Augment to batches of one sample shape, reusing its
// scratch buffers. It is not safe for concurrent use.
type Augmenter struct {
	spec    Augment
	c, h, w int
	img     []float32 // one image
	orig    []float32 // the batch before mixing
}

// NewAugmenter returns an Augmenter for samples of c×h×w.
func NewAugmenter(spec Augment, c, h, w int) (*Augmenter, error) {
	if c < 1 || h < 1 || w < 1 {
		return nil, fmt.Errorf("augment: sample shape %dx%dx%d", c, h, w)
	}
	if spec.CropPad < 0 || spec.MixupAlpha < 0 || spec.CutMixAlpha < 0 || math.IsNaN(spec.MixupAlpha) || math.IsNaN(spec.CutMixAlpha) ||
		!(spec.Noise >= 0) || math.IsInf(spec.Noise, 0) {
		return nil, fmt.Errorf("augment: negative, NaN or infinite strength in %+v", spec)
	}
	return &Augmenter{spec: spec, c: c, h: h, w: w, img: make([]float32, c*h*w)}, nil
}

// Apply transforms the first n samples of x in place. batch numbers the
// batch within the run (the training step): with the spec's seed it fixes
// every random choice, so the output depends only on (seed, batch, x).
// Mixed images get label -1 (unknown): their true class is not one label.
func (g *Augmenter) Apply(x []float32, labels []int, n int, batch int64) error {
	size := g.c * g.h * g.w
	if n < 0 || len(x) < n*size || (labels != nil && len(labels) < n) {
		return fmt.Errorf("augment: %d samples of %d values do not fit %d values and %d labels", n, size, len(x), len(labels))
	}
	if !g.spec.Enabled() || n == 0 {
		return nil
	}
	g.transform(x, labels, n, batch)
	if g.spec.Noise > 0 {
		r := newRand(g.spec.Seed, 0x4015e<<32|uint64(batch))
		sd := g.spec.Noise
		for i := range x[:n*size] {
			x[i] += float32(sd * r.NormFloat64())
		}
	}
	return nil
}

// transform applies the crops, flips and mixing of Apply.
func (g *Augmenter) transform(x []float32, labels []int, n int, batch int64) {
	size := g.c * g.h * g.w
	r := newRand(g.spec.Seed, 0xa06e<<32|uint64(batch))
	for i := 0; i < n; i++ {
		s := x[i*size : (i+1)*size]
		if g.spec.CropPad > 0 {
			p := g.spec.CropPad
			dy, dx := r.IntN(2*p+1)-p, r.IntN(2*p+1)-p
			g.shift(s, dy, dx)
		}
		if g.spec.Flip && r.IntN(2) == 1 {
			g.flip(s)
		}
	}
	mix, cut := g.spec.MixupAlpha > 0, g.spec.CutMixAlpha > 0
	if (!mix && !cut) || n < 2 {
		return
	}
	if mix && cut {
		mix = r.IntN(2) == 0
		cut = !mix
	}
	g.orig = append(g.orig[:0], x[:n*size]...)
	for i := 0; i < n; i++ {
		j := r.IntN(n - 1)
		if j >= i {
			j++ // another image than i
		}
		s, o := x[i*size:(i+1)*size], g.orig[j*size:(j+1)*size]
		if mix {
			lam := float32(beta(r, g.spec.MixupAlpha))
			for k := range s {
				s[k] = lam*s[k] + (1-lam)*o[k]
			}
		} else {
			g.cutMix(s, o, beta(r, g.spec.CutMixAlpha), r)
		}
		if labels != nil && labels[i] != labels[j] {
			labels[i] = -1
		}
	}
}

// shift moves the image by (dy, dx), replicating border pixels.
func (g *Augmenter) shift(s []float32, dy, dx int) {
	if dy == 0 && dx == 0 {
		return
	}
	h, w := g.h, g.w
	copy(g.img, s)
	for c := 0; c < g.c; c++ {
		src, dst := g.img[c*h*w:(c+1)*h*w], s[c*h*w:(c+1)*h*w]
		for y := 0; y < h; y++ {
			sy := min(max(y-dy, 0), h-1)
			row := src[sy*w : (sy+1)*w]
			out := dst[y*w : (y+1)*w]
			for xx := 0; xx < w; xx++ {
				out[xx] = row[min(max(xx-dx, 0), w-1)]
			}
		}
	}
}

// flip mirrors the image left to right.
func (g *Augmenter) flip(s []float32) {
	w := g.w
	for row := 0; row < g.c*g.h; row++ {
		r := s[row*w : (row+1)*w]
		for a, b := 0, w-1; a < b; a, b = a+1, b-1 {
			r[a], r[b] = r[b], r[a]
		}
	}
}

// cutMix pastes into s the rectangle of o covering the fraction 1−lam of
// the image.
func (g *Augmenter) cutMix(s, o []float32, lam float64, r *rand.Rand) {
	h, w := g.h, g.w
	f := math.Sqrt(1 - lam)
	ch, cw := int(math.Round(f*float64(h))), int(math.Round(f*float64(w)))
	cy, cx := r.IntN(h), r.IntN(w)
	y0, y1 := max(cy-ch/2, 0), min(cy+(ch+1)/2, h)
	x0, x1 := max(cx-cw/2, 0), min(cx+(cw+1)/2, w)
	for c := 0; c < g.c; c++ {
		for y := y0; y < y1; y++ {
			off := c*h*w + y*w
			copy(s[off+x0:off+x1], o[off+x0:off+x1])
		}
	}
}

// beta draws from Beta(a, a) as G1/(G1+G2) with G ~ Gamma(a, 1).
func beta(r *rand.Rand, a float64) float64 {
	x, y := gamma(r, a), gamma(r, a)
	if x+y == 0 {
		return 0.5
	}
	return x / (x + y)
}

// gamma draws from Gamma(a, 1) by Marsaglia and Tsang's method (for a < 1
// through Gamma(a+1)·U^(1/a)).
func gamma(r *rand.Rand, a float64) float64 {
	if a < 1 {
		u := r.Float64()
		for u == 0 {
			u = r.Float64()
		}
		return gamma(r, a+1) * math.Pow(u, 1/a)
	}
	d := a - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		z := r.NormFloat64()
		v := 1 + c*z
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.Float64()
		if u < 1-0.0331*z*z*z*z || math.Log(u) < 0.5*z*z+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}
