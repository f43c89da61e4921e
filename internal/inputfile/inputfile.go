// Package inputfile opens the files lprconv reads (models, external data,
// data sets, labels, images) only when they are regular files. A FIFO,
// device or socket is refused after a stat and before any open, since
// opening a FIFO blocks until a writer appears (ignoring signals) and
// reading a device such as /dev/zero never ends.
package inputfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ErrNotRegular is wrapped by the errors of Check, Open and ReadFile for a
// path that exists and is not a regular file (or, for Check with dirOK, a
// directory).
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped by the error of ReadFile for a file over its limit.
var ErrTooLarge = errors.New("file too large")

// Check stats path (following symbolic links) and returns its file info
// when it is a regular file, or a directory when dirOK is set. Anything
// else (FIFO, device, socket, or an unexpected directory) is refused with
// an error wrapping ErrNotRegular; a stat failure is returned wrapped.
func Check(path string, dirOK bool) (fs.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().IsRegular() || (dirOK && fi.IsDir()) {
		return fi, nil
	}
	return nil, fmt.Errorf("%s is %s: %w", path, Describe(fi.Mode()), ErrNotRegular)
}

// Open opens path for reading when it is a regular file (see Check). The
// file is checked again after the open, so a path swapped for a special
// file between the stat and the open is refused as well.
func Open(path string) (*os.File, error) {
	if _, err := Check(path, false); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is %s: %w", path, Describe(fi.Mode()), ErrNotRegular)
	}
	return f, nil
}

// ReadFile reads a whole regular file of at most limit bytes. A larger
// file is refused with ErrTooLarge before it is read.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s has %d bytes, over the limit of %d: %w", path, fi.Size(), limit, ErrTooLarge)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s grew past the limit of %d bytes while read: %w", path, limit, ErrTooLarge)
	}
	return data, nil
}

// Describe names the kind of a file mode for error messages ("a FIFO",
// "a device", ...).
func Describe(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO (named pipe)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file (mode " + m.String() + ")"
}
