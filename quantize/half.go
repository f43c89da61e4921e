package quantize

import "math"

// Float32ToHalf converts f to IEEE 754 binary16 with round-to-nearest,
// ties-to-even. Values of magnitude 65520 and above become ±Inf (65504 is
// the largest finite half), values below 2⁻¹⁴ become subnormal halves
// (multiples of 2⁻²⁴) or ±0, ±Inf stays ±Inf, and NaN stays NaN with its
// sign and the top 10 bits of its payload (a quiet NaN if those are zero).
func Float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man == 0 {
			return sign | 0x7c00
		}
		p := uint16(man >> 13)
		if p == 0 {
			p = 0x200
		}
		return sign | 0x7c00 | p
	}
	// The half's biased exponent for a normal result.
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e >= 1 {
		h := uint32(e)<<10 | man>>13
		rem := man & 0x1fff
		if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
			h++ // a carry into the exponent gives the next binade or Inf
		}
		return sign | uint16(h)
	}
	// Subnormal or zero: the value is m·2^(exp−150) with the implicit bit
	// in m, i.e. (m >> s) units of 2⁻²⁴ with s = 14 − e.
	if exp == 0 {
		return sign // float32 subnormals are far below half's smallest
	}
	m := man | 0x800000
	s := uint(14 - e)
	if s > 24 {
		return sign
	}
	h := m >> s
	rem := m & (1<<s - 1)
	half := uint32(1) << (s - 1)
	if rem > half || (rem == half && h&1 == 1) {
		h++ // 0x3ff + 1 = 0x400 is the smallest normal half
	}
	return sign | uint16(h)
}
