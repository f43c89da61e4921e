package report

import (
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// stickyWriter remembers the first write error so that formatting code can
// print freely and check once at the end.
type stickyWriter struct {
	w   io.Writer
	err error
}

func (s *stickyWriter) printf(format string, args ...any) {
	if s.err != nil {
		return
	}
	_, s.err = fmt.Fprintf(s.w, format, args...)
}

// mdCell escapes text for a Markdown table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// mdRow writes one Markdown table row.
func (s *stickyWriter) mdRow(cells ...string) {
	for i, c := range cells {
		cells[i] = mdCell(c)
	}
	s.printf("| %s |\n", strings.Join(cells, " | "))
}

// mdHeader writes a Markdown table header with its separator line.
func (s *stickyWriter) mdHeader(cells ...string) {
	s.mdRow(cells...)
	sep := make([]string, len(cells))
	for i := range sep {
		sep[i] = "---"
	}
	s.printf("|%s|\n", strings.Join(sep, "|"))
}

// plotTitles names the plots that WritePlots draws, for alt text.
var plotTitles = map[string]string{
	PlotAccuracyParams:  "accuracy vs parameters",
	PlotAccuracyMACs:    "accuracy vs MACs",
	PlotLatencyMACs:     "latency vs MACs",
	PlotAccuracyLatency: "accuracy vs measured latency",
	PlotSpectra:         "singular-value energy per layer",
}

// WriteMarkdown writes s as a readable Markdown report: the original
// model, one table row per configuration, the ranks chosen per layer, the
// embedded plots listed in s.Plots and the notes. Missing values show as
// "n/a".
func WriteMarkdown(w io.Writer, s *Sweep) error {
	o := &stickyWriter{w: w}
	title := "LPR rank sweep"
	if s.Meta.Model != "" {
		title += ": " + filepath.Base(s.Meta.Model)
	}
	o.printf("# %s\n\n", title)
	if s.Meta.Model != "" {
		o.printf("- model: `%s`\n", s.Meta.Model)
	}
	if s.Meta.Date != "" {
		o.printf("- date: %s\n", s.Meta.Date)
	}
	if s.Meta.Command != "" {
		o.printf("- command: `%s`\n", s.Meta.Command)
	}
	o.printf("\n## Original model\n\n")
	o.mdHeader("params", "MACs", "file bytes", "accuracy", "latency (ms)")
	b := s.Original
	o.mdRow(groupDigits(b.Params), groupDigits(b.MACs), groupDigits(b.FileBytes),
		percentOpt(b.Accuracy), fixedOpt(b.LatencyMs, 3))

	o.printf("\n## Configurations\n\n")
	budget := hasBudget(s.Rows)
	head := []string{"config", "residual", "rank ratio"}
	if budget {
		head = append(head, "budget")
	}
	head = append(head, "layers", "params", "MACs", "file bytes", "agreement", "cosine",
		"acc before", "acc after", "latency (ms)", "latency ratio", "precision")
	o.mdHeader(head...)
	for _, r := range s.Rows {
		o.mdRow(configCells(r, budget)...)
	}
	if len(s.Rows) == 0 {
		o.printf("\nNo configuration finished.\n")
	}

	writeLayerTable(o, s.Rows)

	if len(s.Plots) > 0 {
		o.printf("\n## Plots\n\n")
		for i, p := range s.Plots {
			alt, ok := plotTitles[path.Base(filepath.ToSlash(p))]
			if !ok {
				alt = path.Base(filepath.ToSlash(p))
			}
			if i > 0 {
				o.printf("\n")
			}
			o.printf("![%s](%s)\n", alt, filepath.ToSlash(p))
		}
	}
	if len(s.Meta.Notes) > 0 {
		o.printf("\n## Notes\n\n")
		for _, n := range s.Meta.Notes {
			o.printf("- %s\n", n)
		}
	}
	if o.err != nil {
		return fmt.Errorf("write markdown report: %w", o.err)
	}
	return nil
}

// writeLayerTable writes one row per replaced layer and one column per
// configuration with the chosen rank; layers a configuration left alone
// show as "-".
func writeLayerTable(o *stickyWriter, rows []Row) {
	var names []string
	channels := map[string]int{}
	for _, r := range rows {
		for _, l := range r.Layers {
			if _, ok := channels[l.Name]; !ok {
				names = append(names, l.Name)
				channels[l.Name] = l.C
			}
		}
	}
	if len(names) == 0 {
		return
	}
	o.printf("\n## Ranks per layer\n\n")
	head := []string{"layer", "C"}
	for _, r := range rows {
		head = append(head, r.Config)
	}
	o.mdHeader(head...)
	for _, n := range names {
		cells := []string{n, strconv.Itoa(channels[n])}
		for _, r := range rows {
			cell := "-"
			for _, l := range r.Layers {
				if l.Name == n {
					cell = strconv.Itoa(l.Rank)
					break
				}
			}
			cells = append(cells, cell)
		}
		o.mdRow(cells...)
	}
}
