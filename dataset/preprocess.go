package dataset

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Fit says how an image whose size differs from the target is fitted.
type Fit int

const (
	// FitResize stretches the image to the target size with bilinear
	// interpolation (half-pixel centres, no antialiasing: the same as
	// PyTorch's interpolate with align_corners=False).
	FitResize Fit = iota
	// FitCenterCrop cuts the centre of the image at the target size (top
	// and left offsets floor((in-out)/2)); an
	// image smaller than the target in either dimension is first enlarged
	// bilinearly, keeping its aspect ratio, until it covers the target.
	FitCenterCrop
	// FitPad places the image at the centre of the target with zero pixels
	// around it (top and left offsets floor((out-in)/2)), and cuts the
	// centre of a dimension that is larger than the target, without
	// resampling: how 28x28 Fashion-MNIST images become 32x32 model inputs.
	FitPad
)

// String returns "resize" or "center-crop".
func (f Fit) String() string {
	switch f {
	case FitResize:
		return "resize"
	case FitCenterCrop:
		return "center-crop"
	case FitPad:
		return "pad"
	}
	return fmt.Sprintf("Fit(%d)", int(f))
}

// ParseFit parses "resize", "center-crop" (also "crop", "centre-crop") or
// "pad".
func ParseFit(s string) (Fit, error) {
	switch strings.ToLower(s) {
	case "resize", "":
		return FitResize, nil
	case "center-crop", "centre-crop", "crop", "centercrop":
		return FitCenterCrop, nil
	case "pad":
		return FitPad, nil
	}
	return 0, fmt.Errorf("unknown fit %q (want resize, center-crop or pad)", s)
}

// Preprocess converts samples to a model's input shape and normalisation.
// The steps are: channel conversion (gray replicated to every channel, RGB
// to gray by ITU-R 601 luma when Channels is 1), fitting to Height x Width
// (see Fit), then (x - Mean[c]) / Std[c]. Sources already scale 8-bit pixels
// to [0,1].
type Preprocess struct {
	// Channels, Height and Width are the model's input shape (C,H,W).
	Channels, Height, Width int
	// Fit chooses between bilinear resize, centre crop and zero padding.
	Fit Fit
	// Mean and Std hold one value for all channels or one per channel.
	// Empty means mean 0 and std 1.
	Mean, Std []float32
}

// Normalization presets for Preset.
const (
	PresetImageNet = "imagenet"
	PresetNone     = "none"
)

// Preset returns the mean and std of a named normalisation: "imagenet"
// (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225) or "none" (mean 0, std 1).
func Preset(name string) (mean, std []float32, err error) {
	switch strings.ToLower(name) {
	case PresetImageNet:
		return []float32{0.485, 0.456, 0.406}, []float32{0.229, 0.224, 0.225}, nil
	case PresetNone, "":
		return []float32{0}, []float32{1}, nil
	}
	return nil, nil, fmt.Errorf("unknown normalisation preset %q (want %s or %s)", name, PresetImageNet, PresetNone)
}

// Validate reports a shape or normalisation that cannot be applied.
func (p Preprocess) Validate() error {
	if p.Channels <= 0 || p.Height <= 0 || p.Width <= 0 {
		return fmt.Errorf("preprocess: input shape %dx%dx%d must be positive (C,H,W)", p.Channels, p.Height, p.Width)
	}
	if int64(p.Channels)*int64(p.Height)*int64(p.Width) > maxImagePixels {
		return fmt.Errorf("preprocess: input shape %dx%dx%d is too large", p.Channels, p.Height, p.Width)
	}
	if p.Fit != FitResize && p.Fit != FitCenterCrop && p.Fit != FitPad {
		return fmt.Errorf("preprocess: unknown fit %d", int(p.Fit))
	}
	if n := len(p.Mean); n > 1 && n != p.Channels {
		return fmt.Errorf("preprocess: %d mean values for %d channels (give 1 or %d)", n, p.Channels, p.Channels)
	}
	if n := len(p.Std); n > 1 && n != p.Channels {
		return fmt.Errorf("preprocess: %d std values for %d channels (give 1 or %d)", n, p.Channels, p.Channels)
	}
	for i, s := range p.Std {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return fmt.Errorf("preprocess: std[%d] = %v must be finite and positive", i, s)
		}
	}
	for i, m := range p.Mean {
		if math.IsNaN(float64(m)) || math.IsInf(float64(m), 0) {
			return fmt.Errorf("preprocess: mean[%d] = %v must be finite", i, m)
		}
	}
	return nil
}

// Size returns the number of values of one preprocessed sample (C*H*W).
func (p Preprocess) Size() int { return p.Channels * p.Height * p.Width }

// Apply preprocesses s into dst, which must hold at least Size() values.
func (p Preprocess) Apply(s Sample, dst []float32) error {
	if err := p.Validate(); err != nil {
		return err
	}
	var sc scratch
	return p.apply(&s, dst, &sc)
}

// scratch holds the buffers that one goroutine reuses between samples.
type scratch struct {
	chans  []float32 // channel-converted image
	big    []float32 // enlarged image for centre crop
	x0, x1 []int
	wx     []float32
}

func (p Preprocess) apply(s *Sample, dst []float32, sc *scratch) error {
	c, h, w := p.Channels, p.Height, p.Width
	if len(dst) < c*h*w {
		return fmt.Errorf("preprocess %s: destination holds %d values, need %d", s.Path, len(dst), c*h*w)
	}
	dst = dst[:c*h*w]
	if s.Channels <= 0 || s.Height <= 0 || s.Width <= 0 || len(s.Pix) < s.Channels*s.Height*s.Width {
		return fmt.Errorf("preprocess %s: sample shape %dx%dx%d does not match its %d values", s.Path, s.Channels, s.Height, s.Width, len(s.Pix))
	}
	src, err := p.convertChannels(s, sc)
	if err != nil {
		return err
	}
	ih, iw := s.Height, s.Width
	plane := ih * iw
	switch {
	case ih == h && iw == w:
		copy(dst, src[:c*plane])
	case p.Fit == FitPad:
		padCenter(src, c, ih, iw, dst, h, w)
	case p.Fit == FitResize:
		for ch := 0; ch < c; ch++ {
			resizeBilinear(src[ch*plane:(ch+1)*plane], ih, iw, dst[ch*h*w:(ch+1)*h*w], h, w, sc)
		}
	default:
		if ih < h || iw < w {
			scale := math.Max(float64(h)/float64(ih), float64(w)/float64(iw))
			nh := max(h, int(math.Round(float64(ih)*scale)))
			nw := max(w, int(math.Round(float64(iw)*scale)))
			sc.big = grow(sc.big, c*nh*nw)
			for ch := 0; ch < c; ch++ {
				resizeBilinear(src[ch*plane:(ch+1)*plane], ih, iw, sc.big[ch*nh*nw:(ch+1)*nh*nw], nh, nw, sc)
			}
			src, ih, iw, plane = sc.big, nh, nw, nh*nw
		}
		top, left := (ih-h)/2, (iw-w)/2
		for ch := 0; ch < c; ch++ {
			for y := 0; y < h; y++ {
				o := ch*plane + (top+y)*iw + left
				copy(dst[ch*h*w+y*w:ch*h*w+y*w+w], src[o:o+w])
			}
		}
	}
	p.normalize(dst)
	return nil
}

// convertChannels returns the sample's pixels with p.Channels channels.
func (p Preprocess) convertChannels(s *Sample, sc *scratch) ([]float32, error) {
	plane := s.Height * s.Width
	switch {
	case s.Channels == p.Channels:
		return s.Pix[:p.Channels*plane], nil
	case s.Channels == 1:
		sc.chans = grow(sc.chans, p.Channels*plane)
		for ch := 0; ch < p.Channels; ch++ {
			copy(sc.chans[ch*plane:(ch+1)*plane], s.Pix[:plane])
		}
		return sc.chans, nil
	case s.Channels == 3 && p.Channels == 1:
		sc.chans = grow(sc.chans, plane)
		r, g, b := s.Pix[:plane], s.Pix[plane:2*plane], s.Pix[2*plane:3*plane]
		for i := range plane {
			if r[i] == g[i] && g[i] == b[i] {
				sc.chans[i] = r[i] // keep gray pixels exact
				continue
			}
			sc.chans[i] = 0.299*r[i] + 0.587*g[i] + 0.114*b[i]
		}
		return sc.chans, nil
	}
	return nil, fmt.Errorf("preprocess %s: cannot convert %d channels to %d: %w", s.Path, s.Channels, p.Channels, errShape)
}

// normalize applies (x - mean) / std per channel in place.
func (p Preprocess) normalize(dst []float32) {
	if len(p.Mean) == 0 && len(p.Std) == 0 {
		return
	}
	plane := p.Height * p.Width
	for ch := 0; ch < p.Channels; ch++ {
		m, s := float32(0), float32(1)
		if len(p.Mean) == 1 {
			m = p.Mean[0]
		} else if len(p.Mean) > 1 {
			m = p.Mean[ch]
		}
		if len(p.Std) == 1 {
			s = p.Std[0]
		} else if len(p.Std) > 1 {
			s = p.Std[ch]
		}
		if m == 0 && s == 1 {
			continue
		}
		pl := dst[ch*plane : (ch+1)*plane]
		for i := range pl {
			pl[i] = (pl[i] - m) / s
		}
	}
}

// sourceCoord maps output index o of an axis of n outputs onto an input axis
// of size in with half-pixel centres, returning the two neighbours and the
// weight of the second.
func sourceCoord(o, n, in int) (i0, i1 int, frac float32) {
	pos := (float64(o)+0.5)*float64(in)/float64(n) - 0.5
	if pos <= 0 {
		return 0, 0, 0
	}
	i0 = int(pos)
	if i0 >= in-1 {
		return in - 1, in - 1, 0
	}
	return i0, i0 + 1, float32(pos - float64(i0))
}

// resizeBilinear resizes one plane from ih x iw to oh x ow.
func resizeBilinear(src []float32, ih, iw int, dst []float32, oh, ow int, sc *scratch) {
	if cap(sc.x0) < ow {
		sc.x0, sc.x1, sc.wx = make([]int, ow), make([]int, ow), make([]float32, ow)
	}
	x0, x1, wx := sc.x0[:ow], sc.x1[:ow], sc.wx[:ow]
	for x := range ow {
		x0[x], x1[x], wx[x] = sourceCoord(x, ow, iw)
	}
	for y := range oh {
		y0, y1, wy := sourceCoord(y, oh, ih)
		r0, r1 := src[y0*iw:(y0+1)*iw], src[y1*iw:(y1+1)*iw]
		out := dst[y*ow : (y+1)*ow]
		for x := range ow {
			a := r0[x0[x]] + wx[x]*(r0[x1[x]]-r0[x0[x]])
			b := r1[x0[x]] + wx[x]*(r1[x1[x]]-r1[x0[x]])
			out[x] = a + wy*(b-a)
		}
	}
}

// ParseFloatList parses comma-separated numbers such as "0.5" or
// "0.485,0.456,0.406", the form of mean and std flags.
func ParseFloatList(s string) ([]float32, error) {
	var out []float32
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		v, err := strconv.ParseFloat(part, 32)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%q is not a list of numbers like 0.485,0.456,0.406: bad value %q", s, part)
		}
		out = append(out, float32(v))
	}
	return out, nil
}

// padCenter copies c planes of ih x iw pixels to the centre of c planes of
// h x w, writing zeros around them and cutting what does not fit.
func padCenter(src []float32, c, ih, iw int, dst []float32, h, w int) {
	clear(dst[:c*h*w])
	// Offsets of the overlap in the destination (dy, dx) and source (sy, sx).
	dy, sy := max(0, (h-ih)/2), max(0, (ih-h)/2)
	dx, sx := max(0, (w-iw)/2), max(0, (iw-w)/2)
	rows, cols := min(h, ih), min(w, iw)
	for ch := 0; ch < c; ch++ {
		for y := 0; y < rows; y++ {
			o := ch*h*w + (dy+y)*w + dx
			i := ch*ih*iw + (sy+y)*iw + sx
			copy(dst[o:o+cols], src[i:i+cols])
		}
	}
}
