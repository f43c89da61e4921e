package report

import (
	"io"
	"path/filepath"

	"github.com/lprconv/lprconv/internal/atomicfile"
)

// File names that WriteAll writes.
const (
	MarkdownFile = "report.md"
	CSVFile      = "results.csv"
	JSONFile     = "results.json"
)

// WriteAll writes the plots, then report.md (embedding them), results.csv
// and results.json into dir, each atomically. It sets s.Plots to the base
// names of the plots written and returns the paths of every file written.
func WriteAll(dir string, s *Sweep) ([]string, error) {
	plots, err := WritePlots(dir, s)
	if err != nil {
		return plots, err
	}
	s.Plots = s.Plots[:0]
	for _, p := range plots {
		s.Plots = append(s.Plots, filepath.Base(p))
	}
	written := plots
	for _, f := range []struct {
		name  string
		write func(io.Writer, *Sweep) error
	}{
		{MarkdownFile, WriteMarkdown},
		{CSVFile, WriteCSV},
		{JSONFile, WriteJSON},
	} {
		path := filepath.Join(dir, f.name)
		if err := atomicfile.WriteFunc(path, func(w io.Writer) error { return f.write(w, s) }); err != nil {
			return written, err
		}
		written = append(written, path)
	}
	return written, nil
}
