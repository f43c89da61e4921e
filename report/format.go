package report

import (
	"math"
	"strconv"
	"strings"
)

// notAvailable is how Markdown and terminal tables show a missing value.
const notAvailable = "n/a"

// FormatRatio writes a rank ratio as a fraction "1/n" when it is the
// reciprocal of a whole number and as a short decimal otherwise.
func FormatRatio(r float64) string {
	if r > 0 && r <= 1 {
		n := 1 / r
		if rn := math.Round(n); math.Abs(n-rn) < 1e-9*rn {
			if rn == 1 {
				return "1"
			}
			return "1/" + strconv.FormatFloat(rn, 'f', 0, 64)
		}
	}
	return strconv.FormatFloat(r, 'g', 4, 64)
}

// ratioCell writes a rank ratio for a table, "-" when ranks came from a
// budget instead (ratio 0).
func ratioCell(r float64) string {
	if r == 0 {
		return "-"
	}
	return FormatRatio(r)
}

// groupDigits writes n with thousands separators (1,234,567).
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fixed writes v with the given number of decimals.
func fixed(v float64, decimals int) string {
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// percentOpt writes an optional fraction as a percentage, or "n/a".
func percentOpt(v *float64) string {
	if v == nil {
		return notAvailable
	}
	return fixed(100**v, 2) + "%"
}

// fixedOpt writes an optional value with fixed decimals, or "n/a".
func fixedOpt(v *float64, decimals int) string {
	if v == nil {
		return notAvailable
	}
	return fixed(*v, decimals)
}

// withRatio writes a count followed by its ratio to the original.
func withRatio(n int64, ratio float64) string {
	return groupDigits(n) + " (" + fixed(ratio, 3) + "x)"
}

// exact writes v so that parsing it back gives the same float64.
func exact(v float64) string {
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// exactOpt writes an optional value exactly, or the empty string.
func exactOpt(v *float64) string {
	if v == nil {
		return ""
	}
	return exact(*v)
}

// layersText writes per-layer ranks as "name:rank/C;name:rank/C".
func layersText(ls []LayerRank) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.Name + ":" + strconv.Itoa(l.Rank) + "/" + strconv.Itoa(l.C)
	}
	return strings.Join(parts, ";")
}

// hasBudget reports whether any row was planned from a budget.
func hasBudget(rows []Row) bool {
	for _, r := range rows {
		if r.Budget != "" {
			return true
		}
	}
	return false
}
