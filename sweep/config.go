package sweep

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultRatios are the rank ratios swept when none are given.
const DefaultRatios = "1/2,1/4,1/8,1/16"

// Config is one point of a sweep: a residual kind and a rank ratio.
type Config struct {
	// Residual is the residual kind's name as the svd package writes it
	// (identity, diag, dw3x3, none).
	Residual string
	// Ratio is the rank as a fraction of the channel count, in (0, 1].
	Ratio float64
}

// Name identifies the configuration in file names, state and reports,
// e.g. "diag_r0.25".
func (c Config) Name() string {
	return c.Residual + "_r" + strconv.FormatFloat(c.Ratio, 'g', 4, 64)
}

// ModelFile returns the file name of the compressed model for the original
// model at modelPath: "<model>_<residual>_r<ratio>.onnx".
func (c Config) ModelFile(modelPath string) string {
	base := filepath.Base(modelPath)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	return base + "_" + c.Name() + ".onnx"
}

// ParseRatio parses a rank ratio written as a fraction ("1/4") or a decimal
// ("0.25"); it must lie in (0, 1].
func ParseRatio(s string) (float64, error) {
	s = strings.TrimSpace(s)
	var r float64
	if num, den, ok := strings.Cut(s, "/"); ok {
		n, err1 := strconv.ParseFloat(strings.TrimSpace(num), 64)
		d, err2 := strconv.ParseFloat(strings.TrimSpace(den), 64)
		if err1 != nil || err2 != nil || d == 0 {
			return 0, fmt.Errorf("rank ratio %q: want a fraction like 1/4 or a decimal like 0.25", s)
		}
		r = n / d
	} else {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("rank ratio %q: want a fraction like 1/4 or a decimal like 0.25", s)
		}
		r = v
	}
	if !(r > 0 && r <= 1) {
		return 0, fmt.Errorf("rank ratio %q: must be greater than 0 and at most 1", s)
	}
	return r, nil
}

// ParseRatios parses a comma-separated list of rank ratios (see
// ParseRatio). Empty items are ignored; an empty list is an error.
func ParseRatios(s string) ([]float64, error) {
	var out []float64
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		r, err := ParseRatio(part)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("rank ratios %q: give at least one ratio, e.g. %s", s, DefaultRatios)
	}
	return out, nil
}

// Grid returns every combination of residual and ratio, residuals outer,
// in the order given. Two entries with the same name are an error.
func Grid(residuals []string, ratios []float64) ([]Config, error) {
	if len(residuals) == 0 || len(ratios) == 0 {
		return nil, fmt.Errorf("sweep needs at least one residual and one rank ratio")
	}
	seen := map[string]bool{}
	var out []Config
	for _, res := range residuals {
		if !safeName(res) {
			return nil, fmt.Errorf("residual %q: names may hold only letters, digits, '-' and '.'", res)
		}
		for _, r := range ratios {
			c := Config{Residual: res, Ratio: r}
			if seen[c.Name()] {
				return nil, fmt.Errorf("configuration %s is listed twice (check --residuals and --rank-ratios)", c.Name())
			}
			seen[c.Name()] = true
			out = append(out, c)
		}
	}
	return out, nil
}

// safeName reports whether s can be used inside a file name.
func safeName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.'
		if !ok {
			return false
		}
	}
	return true
}
