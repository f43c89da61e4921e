package report

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
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
		if err := writeFileAtomic(path, func(w io.Writer) error { return f.write(w, s) }); err != nil {
			return written, err
		}
		written = append(written, path)
	}
	return written, nil
}

// writeFileAtomic writes a file through write into a temporary file in the
// destination folder and renames it into place, so that readers never see
// a partial file and a failure leaves any previous file intact.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = write(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
