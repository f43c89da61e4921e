package sweep

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lprconv/lprconv/pipeline"
	"github.com/lprconv/lprconv/quantize"
)

// DefaultRatios are the rank ratios swept when none are given.
const DefaultRatios = "1/2,1/4,1/8,1/16"

// Config is one point of a sweep: a residual kind and either a uniform
// rank ratio or a budget for which per-layer ranks are allocated.
type Config struct {
	// Residual is the residual kind's name as the svd package writes it
	// (identity, diag, dw3x3, none).
	Residual string
	// Ratio is the rank as a fraction of the channel count, in (0, 1];
	// 0 when Budget chooses the ranks.
	Ratio float64
	// Budget, when its Fraction is set, chooses every layer's rank with
	// rankalloc so that the model keeps that fraction of the original's
	// parameters, MACs or latency measured in ONNX Runtime (which needs
	// PipelineOptions.Latency); Ratio is then 0.
	Budget pipeline.Budget
	// Precision is the precision the model is written at: fp32 (also
	// the zero value), fp16 or int8 (quantize.Convert after
	// verification).
	Precision quantize.Precision `json:",omitempty"`
}

// Quantized reports whether the configuration's model is written at a
// precision other than fp32.
func (c Config) Quantized() bool { return c.Precision != "" && c.Precision != quantize.FP32 }

// HasBudget reports whether the configuration's ranks come from a budget.
func (c Config) HasBudget() bool { return c.Budget.Fraction > 0 }

// Name identifies the configuration in file names, state and reports:
// "diag_r0.25" for a rank ratio, "diag_b0.6" for a parameter budget,
// "diag_bmacs0.5" for a MAC budget and "diag_blatency0.8" for a latency
// budget, followed by "_fp16" or "_int8" for
// those precisions (fp32 adds nothing, so fp32 names are those of sweeps
// without a precision axis).
func (c Config) Name() string {
	var name string
	if c.HasBudget() {
		prefix := "_b"
		switch c.Budget.Resource {
		case pipeline.MACs:
			prefix = "_bmacs"
		case pipeline.LatencyResource:
			prefix = "_blatency"
		}
		name = c.Residual + prefix + strconv.FormatFloat(c.Budget.Fraction, 'g', 4, 64)
	} else {
		name = c.Residual + "_r" + strconv.FormatFloat(c.Ratio, 'g', 4, 64)
	}
	if c.Quantized() {
		name += "_" + string(c.Precision)
	}
	return name
}

// ModelFile returns the file name of the compressed model for the original
// model at modelPath: "<model>_<name>.onnx", e.g.
// "mobilenetv1_diag_r0.25.onnx" or "mobilenetv1_diag_b0.6.onnx".
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
// ParseRatio). Empty items are ignored; an empty list is an error. "none"
// stands for no ratios (a sweep over budgets only) and gives an empty list.
func ParseRatios(s string) ([]float64, error) {
	if strings.EqualFold(strings.TrimSpace(s), "none") {
		return nil, nil
	}
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

// ParseBudgets parses a comma-separated list of budgets, each as
// pipeline.ParseBudget reads it ("0.6" or "params=0.6" for parameters,
// "macs=0.5" for MACs, "latency=0.8" for latency measured in ONNX Runtime,
// which the Pipeline must be given: PipelineOptions.Latency). Empty items
// are ignored, so "" gives no budgets.
func ParseBudgets(s string) ([]pipeline.Budget, error) {
	var out []pipeline.Budget
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		b, err := pipeline.ParseBudget(part)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// ParsePrecisions parses a comma-separated list of precisions (fp32,
// fp16, int8; see quantize.ParsePrecision). Empty items are ignored; an
// empty list gives fp32 alone; a precision listed twice is an error.
func ParsePrecisions(s string) ([]quantize.Precision, error) {
	var out []quantize.Precision
	seen := map[quantize.Precision]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := quantize.ParsePrecision(strings.ToLower(part))
		if err != nil {
			return nil, err
		}
		if seen[p] {
			return nil, fmt.Errorf("precision %s is listed twice", p)
		}
		seen[p] = true
		out = append(out, p)
	}
	if len(out) == 0 {
		out = []quantize.Precision{quantize.FP32}
	}
	return out, nil
}

// Grid returns every combination of residual with a rank ratio or a
// budget and a precision: residuals outer, then the ratios, then the
// budgets, each followed by its precisions, in the order given (no
// precisions: fp32 alone). Two entries with the same name are an error.
func Grid(residuals []string, ratios []float64, budgets []pipeline.Budget, precisions ...quantize.Precision) ([]Config, error) {
	if len(residuals) == 0 || len(ratios)+len(budgets) == 0 {
		return nil, fmt.Errorf("sweep needs at least one residual and one rank ratio or budget")
	}
	if len(precisions) == 0 {
		precisions = []quantize.Precision{quantize.FP32}
	}
	for _, p := range precisions {
		if _, err := quantize.ParsePrecision(string(p)); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	var out []Config
	for _, res := range residuals {
		if !safeName(res) {
			return nil, fmt.Errorf("residual %q: names may hold only letters, digits, '-' and '.'", res)
		}
		var cfgs []Config
		for _, r := range ratios {
			cfgs = append(cfgs, Config{Residual: res, Ratio: r})
		}
		for _, b := range budgets {
			if err := b.Validate(); err != nil {
				return nil, err
			}
			cfgs = append(cfgs, Config{Residual: res, Budget: b})
		}
		for _, base := range cfgs {
			for _, p := range precisions {
				c := base
				c.Precision = p
				if p == quantize.FP32 {
					// The zero value, so that fp32 configurations equal
					// those of a sweep without a precision axis.
					c.Precision = ""
				}
				if seen[c.Name()] {
					return nil, fmt.Errorf("configuration %s is listed twice (check --residuals, --rank-ratios, --budgets and --precisions)", c.Name())
				}
				seen[c.Name()] = true
				out = append(out, c)
			}
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
