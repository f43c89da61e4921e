package quantize

import (
	"math"
	"testing"

	"github.com/lprconv/lprconv/onnxio"
)

// TestFloat32ToHalf checks exact binary16 encodings, including every kind
// of tie, the overflow threshold, subnormals and special values.
func TestFloat32ToHalf(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.1, 0x2e66},                      // 0.0999755859375 is nearest
		{65504, 0x7bff},                    // largest finite half
		{65519.996, 0x7bff},                // just below the tie with 65536
		{65520, 0x7c00},                    // tie between 65504 and 65536: even is Inf
		{1e10, 0x7c00},                     // overflow
		{-1e10, 0xfc00},                    //
		{1 + 1.0/2048, 0x3c00},             // tie, even is 1
		{1 + 3.0/2048, 0x3c02},             // tie, even is 1 + 2/1024
		{1 + 1.0/2048 + 1.0/65536, 0x3c01}, // above the tie
		{float32(math.Ldexp(1, -14)), 0x0400},
		{float32(math.Ldexp(1, -14) - math.Ldexp(1, -25)), 0x0400}, // tie between 0x3ff and 0x400
		{float32(math.Ldexp(1, -24)), 0x0001},                      // smallest subnormal
		{float32(math.Ldexp(1, -25)), 0x0000},                      // tie between 0 and 1: even is 0
		{float32(math.Ldexp(1, -25) * 1.0001), 0x0001},
		{float32(math.Ldexp(3, -25)), 0x0002}, // tie between 1 and 2 units: even is 2
		{float32(math.Ldexp(5, -25)), 0x0002}, // tie between 2 and 3 units: even is 2
		{float32(math.Ldexp(1, -30)), 0x0000},
		{float32(math.Ldexp(1, -140)), 0x0000}, // float32 subnormal
		{float32(-math.Ldexp(1, -24)), 0x8001},
		{float32(math.Inf(1)), 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
		{math.Float32frombits(0x7fc00000), 0x7e00}, // quiet NaN
		{math.Float32frombits(0xffc00000), 0xfe00},
		{math.Float32frombits(0x7f800001), 0x7e00}, // NaN payload below half's bits stays NaN
	}
	for _, c := range cases {
		if got := Float32ToHalf(c.in); got != c.want {
			t.Errorf("Float32ToHalf(%g = %#08x) = %#04x, want %#04x", c.in, math.Float32bits(c.in), got, c.want)
		}
	}
}

// TestFloat32ToHalfRoundTrip checks that every finite half converts back
// to itself through float32, that values between two neighbouring halves
// go to the nearer one, and NaN stays NaN.
func TestFloat32ToHalfRoundTrip(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := onnxio.HalfToFloat32(uint16(h))
		got := Float32ToHalf(f)
		if f != f {
			if g := onnxio.HalfToFloat32(got); g == g {
				t.Fatalf("NaN %#04x became %#04x", h, got)
			}
			continue
		}
		if got != uint16(h) {
			t.Fatalf("half %#04x -> %g -> %#04x", h, f, got)
		}
		// A quarter of the way to the next half (same sign, larger
		// magnitude) rounds back down; three quarters rounds up.
		if h&0x7fff >= 0x7bff {
			continue
		}
		next := float64(onnxio.HalfToFloat32(uint16(h + 1)))
		for _, c := range []struct {
			frac float64
			want uint16
		}{{0.25, uint16(h)}, {0.75, uint16(h + 1)}} {
			v := float32(float64(f) + c.frac*(next-float64(f)))
			if got := Float32ToHalf(v); got != c.want {
				t.Fatalf("%g (%.2f of the way from %#04x to %#04x) -> %#04x", v, c.frac, h, h+1, got)
			}
		}
	}
}
