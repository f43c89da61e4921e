package report

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteTable writes s as aligned columns for a terminal: the original
// model first, then one line per configuration. Missing values show as
// "n/a".
func WriteTable(w io.Writer, s *Sweep) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	budget := hasBudget(s.Rows)
	head := []string{"CONFIG", "RESIDUAL", "RATIO"}
	if budget {
		head = append(head, "BUDGET")
	}
	head = append(head, "LAYERS", "PARAMS", "MACS", "FILE", "AGREE", "COSINE",
		"ACC-BEFORE", "ACC-AFTER", "LATENCY-MS", "LAT-RATIO", "PRECISION")
	lines := [][]string{head}

	b := s.Original
	orig := []string{"original", "-", "-"}
	if budget {
		orig = append(orig, "-")
	}
	orig = append(orig, "-", groupDigits(b.Params), groupDigits(b.MACs), groupDigits(b.FileBytes),
		"-", "-", percentOpt(b.Accuracy), "-", fixedOpt(b.LatencyMs, 3), "-", "fp32")
	lines = append(lines, orig)

	for _, r := range s.Rows {
		lines = append(lines, configCells(r, budget))
	}
	for _, l := range lines {
		if _, err := fmt.Fprintln(tw, strings.Join(l, "\t")); err != nil {
			return fmt.Errorf("write table: %w", err)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// configCells returns the cells of one configuration row shared by the
// terminal and Markdown tables, with the budget column when budget is set.
func configCells(r Row, budget bool) []string {
	cells := []string{r.Config, r.Residual, ratioCell(r.RankRatio)}
	if budget {
		cells = append(cells, r.Budget)
	}
	return append(cells,
		strconv.Itoa(len(r.Layers)),
		withRatio(r.Params, r.ParamsRatio),
		withRatio(r.MACs, r.MACsRatio),
		withRatio(r.FileBytes, r.FileRatio),
		percentOpt(r.Agreement),
		fixedOpt(r.Cosine, 4),
		percentOpt(r.AccBefore),
		percentOpt(r.AccAfter),
		fixedOpt(r.LatencyMs, 3),
		fixedOpt(r.LatencyRatio, 3),
		precisionCell(r.Precision),
	)
}

// precisionCell writes a row's precision; empty means fp32.
func precisionCell(p string) string {
	if p == "" {
		return "fp32"
	}
	return p
}
