// Package atomicfile writes files so that readers never see a partial one
// and a failure never damages what was there before: the content goes to a
// temporary file in the destination folder, is flushed and synced, and only
// then renamed over the destination. It is the one writer every lprconv
// output (models, external data, checkpoints, sweep state, reports) uses.
package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lprconv/lprconv/internal/inputfile"
)

// ErrNotRegular is returned when the destination exists and is not a
// regular file (a device node, FIFO, socket or folder): such a path is never
// replaced.
var ErrNotRegular = errors.New("not a regular file")

// Write writes data to path atomically with permissions 0644.
func Write(path string, data []byte) error {
	return WriteFunc(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc streams the content produced by write into a temporary file in
// path's folder, syncs it and renames it to path. When write or any later
// step fails, the temporary file is removed and path is left as it was.
// A path that exists and is not a regular file is refused with
// ErrNotRegular before anything is written.
func WriteFunc(path string, write func(w io.Writer) error) (err error) {
	if err := CheckDestination(path); err != nil {
		return err
	}
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
	bw := bufio.NewWriterSize(f, 1<<20)
	if err = write(bw); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
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

// CheckDestination returns nil when path does not exist or is a regular
// file, and an error wrapping ErrNotRegular when it is anything else. A
// symbolic link is judged by what it points to.
func CheckDestination(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("write %s: %w (%s); choose a file path", path, ErrNotRegular, inputfile.Describe(fi.Mode()))
	}
	return nil
}
