package dataset

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

func seq(n int, f func(i int) float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func TestPreprocessGeometry(t *testing.T) {
	// Bilinear with half-pixel centres, 2 -> 4: source positions -0.25,
	// 0.25, 0.75, 1.25 clamp to weights 0, .25, .75, 1 between the two
	// source pixels. For the 2x2 image [[0,1],[2,3]] the output is
	// wx[x] + 2*wy[y].
	w := []float32{0, .25, .75, 1}
	up := make([]float32, 16)
	for y := 0; y < 4; y++ {
		for x := 0; x < 4; x++ {
			up[y*4+x] = w[x] + 2*w[y]
		}
	}
	tests := []struct {
		name string
		in   Sample
		pre  Preprocess
		want []float32
	}{
		{
			name: "bilinear upscale 2x2 to 4x4",
			in:   Sample{Channels: 1, Height: 2, Width: 2, Pix: []float32{0, 1, 2, 3}},
			pre:  Preprocess{Channels: 1, Height: 4, Width: 4},
			want: up,
		},
		{
			// 4 -> 2: source positions 0.5 and 2.5, so each output is the
			// mean of a 2x2 block.
			name: "bilinear downscale 4x4 to 2x2",
			in:   Sample{Channels: 1, Height: 4, Width: 4, Pix: seq(16, func(i int) float32 { return float32(i) })},
			pre:  Preprocess{Channels: 1, Height: 2, Width: 2},
			want: []float32{2.5, 4.5, 10.5, 12.5},
		},
		{
			// 1x3 -> 1x2: positions 0.25 and 1.75 in x.
			name: "bilinear non-uniform 1x3 to 1x2",
			in:   Sample{Channels: 1, Height: 1, Width: 3, Pix: []float32{0, 4, 8}},
			pre:  Preprocess{Channels: 1, Height: 1, Width: 2},
			want: []float32{1, 7},
		},
		{
			name: "same size is a copy",
			in:   Sample{Channels: 1, Height: 2, Width: 2, Pix: []float32{.1, .2, .3, .4}},
			pre:  Preprocess{Channels: 1, Height: 2, Width: 2},
			want: []float32{.1, .2, .3, .4},
		},
		{
			// 4x5 -> 2x3: top (4-2)/2 = 1, left (5-3)/2 = 1.
			name: "centre crop",
			in:   Sample{Channels: 1, Height: 4, Width: 5, Pix: seq(20, func(i int) float32 { return float32(i) })},
			pre:  Preprocess{Channels: 1, Height: 2, Width: 3, Fit: FitCenterCrop},
			want: []float32{6, 7, 8, 11, 12, 13},
		},
		{
			// 2x2 -> 4x4 crop: enlarging by 2 covers the target exactly.
			name: "centre crop of a small image enlarges it",
			in:   Sample{Channels: 1, Height: 2, Width: 2, Pix: []float32{0, 1, 2, 3}},
			pre:  Preprocess{Channels: 1, Height: 4, Width: 4, Fit: FitCenterCrop},
			want: up,
		},
		{
			name: "gray replicated to 3 channels",
			in:   Sample{Channels: 1, Height: 1, Width: 2, Pix: []float32{.25, .5}},
			pre:  Preprocess{Channels: 3, Height: 1, Width: 2},
			want: []float32{.25, .5, .25, .5, .25, .5},
		},
		{
			name: "RGB to gray by luma, gray pixels exact",
			in:   Sample{Channels: 3, Height: 1, Width: 2, Pix: []float32{1, .3, 0, .3, 0, .3}},
			pre:  Preprocess{Channels: 1, Height: 1, Width: 2},
			want: []float32{0.299, .3},
		},
		{
			name: "one mean and std broadcast",
			in:   Sample{Channels: 2, Height: 1, Width: 2, Pix: []float32{1, 0, .5, .25}},
			pre:  Preprocess{Channels: 2, Height: 1, Width: 2, Mean: []float32{.5}, Std: []float32{.25}},
			want: []float32{2, -2, 0, -1},
		},
		{
			name: "per-channel mean and std",
			in:   Sample{Channels: 1, Height: 1, Width: 1, Pix: []float32{.5}},
			pre:  Preprocess{Channels: 3, Height: 1, Width: 1, Mean: []float32{.485, .456, .406}, Std: []float32{.229, .224, .225}},
			want: []float32{(.5 - float32(.485)) / .229, (.5 - float32(.456)) / .224, (.5 - float32(.406)) / .225},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]float32, tc.pre.Size())
			if err := tc.pre.Apply(tc.in, dst); err != nil {
				t.Fatal(err)
			}
			if len(dst) != len(tc.want) {
				t.Fatalf("got %d values, want %d", len(dst), len(tc.want))
			}
			for i := range dst {
				if !approx(dst[i], tc.want[i], 1e-6) {
					t.Fatalf("got %v, want %v", dst, tc.want)
				}
			}
		})
	}
}

func TestCenterCropEnlargeKeepsAspect(t *testing.T) {
	// A 2x4 image cropped to 3x3 is first enlarged by 1.5 to 3x6, then the
	// centre columns 1..3 are kept.
	in := Sample{Channels: 1, Height: 2, Width: 4, Pix: seq(8, func(i int) float32 { return float32(i * i) })}
	big := make([]float32, 18)
	if err := (Preprocess{Channels: 1, Height: 3, Width: 6}).Apply(in, big); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, 9)
	if err := (Preprocess{Channels: 1, Height: 3, Width: 3, Fit: FitCenterCrop}).Apply(in, got); err != nil {
		t.Fatal(err)
	}
	for y := 0; y < 3; y++ {
		for x := 0; x < 3; x++ {
			if got[y*3+x] != big[y*6+x+1] {
				t.Fatalf("crop %v does not match columns 1..3 of %v", got, big)
			}
		}
	}
}

func TestPreset(t *testing.T) {
	m, s, err := Preset("imagenet")
	if err != nil || !reflect.DeepEqual(m, []float32{.485, .456, .406}) || !reflect.DeepEqual(s, []float32{.229, .224, .225}) {
		t.Fatalf("imagenet = %v %v %v", m, s, err)
	}
	m, s, err = Preset("none")
	if err != nil || !reflect.DeepEqual(m, []float32{0}) || !reflect.DeepEqual(s, []float32{1}) {
		t.Fatalf("none = %v %v %v", m, s, err)
	}
	if _, _, err := Preset("cifar"); err == nil {
		t.Fatal("unknown preset: no error")
	}
}

func TestParseFit(t *testing.T) {
	for s, want := range map[string]Fit{"resize": FitResize, "center-crop": FitCenterCrop, "crop": FitCenterCrop} {
		if got, err := ParseFit(s); err != nil || got != want {
			t.Errorf("ParseFit(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseFit("zoom"); err == nil {
		t.Error("ParseFit(zoom): no error")
	}
}

func TestPreprocessValidate(t *testing.T) {
	tests := []struct {
		pre  Preprocess
		want string // "" for valid
	}{
		{Preprocess{Channels: 3, Height: 224, Width: 224, Mean: []float32{.5}, Std: []float32{.2, .2, .2}}, ""},
		{Preprocess{Channels: 0, Height: 2, Width: 2}, "must be positive"},
		{Preprocess{Channels: 3, Height: 2, Width: 2, Mean: []float32{1, 2}}, "2 mean values for 3 channels"},
		{Preprocess{Channels: 3, Height: 2, Width: 2, Std: []float32{1, 0, 1}}, "std[1]"},
		{Preprocess{Channels: 1, Height: 2, Width: 2, Fit: Fit(7)}, "unknown fit"},
	}
	for _, tc := range tests {
		err := tc.pre.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.pre, err, tc.want)
		}
	}
}

func TestPreprocessChannelMismatch(t *testing.T) {
	s := Sample{Channels: 3, Height: 1, Width: 1, Pix: []float32{1, 2, 3}, Path: "x.png"}
	err := (Preprocess{Channels: 2, Height: 1, Width: 1}).Apply(s, make([]float32, 2))
	if err == nil || !strings.Contains(err.Error(), "x.png") {
		t.Fatalf("err = %v, want channel error naming x.png", err)
	}
	err = (Preprocess{Channels: 1, Height: 2, Width: 2}).Apply(Sample{Channels: 1, Height: 1, Width: 1, Pix: []float32{1}}, make([]float32, 3))
	if err == nil {
		t.Fatal("short destination: no error")
	}
}

// TestBilinearMatchesPyTorch compares a non-integer downscale with values
// printed by PyTorch 1.13:
//
//	x = torch.arange(35, dtype=torch.float32).reshape(1, 1, 5, 7)**1.5/10
//	F.interpolate(x, size=(3, 4), mode='bilinear', align_corners=False)
func TestBilinearMatchesPyTorch(t *testing.T) {
	want := []float32{0.693681419, 1.12755442, 1.70581329, 2.38799953, 5.45250273, 6.47615957, 7.55831861, 8.6958847, 13.3724051, 14.7305851, 16.1335297, 17.5797958}
	in := seq(35, func(i int) float32 { return float32(math.Pow(float64(i), 1.5)) / 10 })
	got := make([]float32, 12)
	if err := (Preprocess{Channels: 1, Height: 3, Width: 4}).Apply(Sample{Channels: 1, Height: 5, Width: 7, Pix: in}, got); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !approx(got[i], want[i], 2e-6*want[i]) {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestParseFloatList(t *testing.T) {
	got, err := ParseFloatList(" 0.485, 0.456 ,0.406")
	if err != nil || !reflect.DeepEqual(got, []float32{0.485, 0.456, 0.406}) {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", "1,,2", "a", "NaN", "1e99"} {
		if _, err := ParseFloatList(bad); err == nil {
			t.Errorf("ParseFloatList(%q): no error", bad)
		}
	}
}

func TestFitPad(t *testing.T) {
	// A 2x3 image padded into 4x4: offsets (1, 0); then cut into 1x2.
	s := Sample{Channels: 1, Height: 2, Width: 3, Pix: []float32{1, 2, 3, 4, 5, 6}}
	for _, tc := range []struct {
		h, w int
		want []float32
	}{
		{4, 4, []float32{0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6, 0, 0, 0, 0, 0}},
		{1, 2, []float32{1, 2}},
		{2, 5, []float32{0, 1, 2, 3, 0, 0, 4, 5, 6, 0}},
	} {
		p := Preprocess{Channels: 1, Height: tc.h, Width: tc.w, Fit: FitPad}
		dst := make([]float32, tc.h*tc.w)
		for i := range dst {
			dst[i] = -7 // stale data must be overwritten
		}
		if err := p.Apply(s, dst); err != nil {
			t.Fatal(err)
		}
		for i := range dst {
			if dst[i] != tc.want[i] {
				t.Fatalf("%dx%d: got %v, want %v", tc.h, tc.w, dst, tc.want)
			}
		}
	}
	if f, err := ParseFit("pad"); err != nil || f != FitPad || f.String() != "pad" {
		t.Fatalf("ParseFit(pad) = %v, %v", f, err)
	}
}
