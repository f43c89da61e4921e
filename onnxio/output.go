package onnxio

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/internal/atomicfile"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Reasons CheckOutput refuses a file that a save would write; an
// *OutputError wraps exactly one of them (or atomicfile.ErrNotRegular for
// a device node, FIFO, socket or folder).
var (
	// ErrOutputIsInput: the file is the input model or a file it
	// references (its external data), whatever the overwrite setting.
	ErrOutputIsInput = errors.New("is an input file")
	// ErrOutputExists: the file exists and overwriting was not asked for.
	ErrOutputExists = errors.New("exists")
	// ErrOutputFolder: the file's folder does not exist or is not a folder.
	ErrOutputFolder = errors.New("has no folder to be written in")
)

// OutputError is the error CheckOutput returns for a file a save must not
// write.
type OutputError struct {
	// Path is the file the save would write; Role says which ("model" or
	// "external data").
	Path, Role string
	// Input is, for ErrOutputIsInput, the input file Path names.
	Input string
	// Err is ErrOutputIsInput, ErrOutputExists, ErrOutputFolder or an
	// error wrapping atomicfile.ErrNotRegular.
	Err error
}

// Error says which file is refused and what to do about it.
func (e *OutputError) Error() string {
	switch {
	case errors.Is(e.Err, ErrOutputIsInput):
		if e.Input != "" && e.Input != e.Path {
			return fmt.Sprintf("output %s %s is the input file %s; write to another path", e.Role, e.Path, e.Input)
		}
		return fmt.Sprintf("output %s %s is an input file (the model or its external data); write to another path", e.Role, e.Path)
	case errors.Is(e.Err, ErrOutputExists):
		return fmt.Sprintf("output %s %s exists; pass --overwrite to replace it", e.Role, e.Path)
	case errors.Is(e.Err, ErrOutputFolder):
		return fmt.Sprintf("output %s %s: its folder does not exist", e.Role, e.Path)
	}
	return fmt.Sprintf("output %s %s: %v", e.Role, e.Path, e.Err)
}

// Unwrap returns the reason.
func (e *OutputError) Unwrap() error { return e.Err }

// OutputFiles returns the files Save(path, m, opts) would write: path, and
// its external data file (ExternalDataName, in path's folder) when
// opts.ExternalData is set or when m, if not nil, is over the 2 GiB
// protobuf limit. With opts.ExternalData the data file is listed even when
// no tensor is large enough to go there, so that checks err on the safe
// side.
func OutputFiles(path string, m *onnxpb.ModelProto, opts SaveOptions) []string {
	out := []string{path}
	if opts.ExternalData || (m != nil && proto.Size(m) > MaxFileBytes) {
		out = append(out, filepath.Join(filepath.Dir(path), ExternalDataName(path)))
	}
	return out
}

// CheckOutput checks, before any work is done, that Save(out, m, opts)
// may write every file it would (OutputFiles; m may be nil when the model
// is not built yet), and returns them. inputs are the files the input was
// read from (LoadFiles gives them). A file is refused with an
// *OutputError when it
//   - is one of inputs, by resolved path or by identity (a hard link),
//     whatever overwrite says: ErrOutputIsInput;
//   - exists and is not a regular file (a device such as /dev/full, a
//     FIFO, a socket, a folder), whatever overwrite says:
//     atomicfile.ErrNotRegular;
//   - exists and overwrite is false: ErrOutputExists;
//   - lies in a folder that does not exist: ErrOutputFolder.
//
// Callers run it once before the work and again right before Save, since
// files can appear while a long run goes on.
func CheckOutput(out string, m *onnxpb.ModelProto, opts SaveOptions, inputs []string, overwrite bool) ([]string, error) {
	if out == "" {
		return nil, &OutputError{Path: out, Role: "model", Err: ErrOutputFolder}
	}
	paths := OutputFiles(out, m, opts)
	type ident struct {
		path string
		fi   fs.FileInfo
	}
	var ins []ident
	for _, p := range inputs {
		id := ident{path: resolved(p)}
		id.fi, _ = os.Stat(p)
		ins = append(ins, id)
	}
	for i, p := range paths {
		role := "model"
		if i > 0 {
			role = "external data"
		}
		rp := resolved(p)
		fi, statErr := os.Stat(p)
		for _, in := range ins {
			if rp == in.path || (statErr == nil && in.fi != nil && os.SameFile(fi, in.fi)) {
				return nil, &OutputError{Path: p, Role: role, Input: in.path, Err: ErrOutputIsInput}
			}
		}
		if d, err := os.Stat(filepath.Dir(p)); err != nil || !d.IsDir() {
			return nil, &OutputError{Path: p, Role: role, Err: ErrOutputFolder}
		}
		if err := atomicfile.CheckDestination(p); err != nil {
			return nil, &OutputError{Path: p, Role: role, Err: err}
		}
		if statErr == nil && !overwrite {
			return nil, &OutputError{Path: p, Role: role, Err: ErrOutputExists}
		}
	}
	return paths, nil
}

// resolved returns p as an absolute path with symbolic links resolved; for
// a file that does not exist yet, its folder is resolved and its name kept.
func resolved(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		if a, err := filepath.Abs(r); err == nil {
			return a
		}
	}
	dir, base := filepath.Split(p)
	if dir == "" {
		dir = "."
	}
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		dir = r
	}
	if a, err := filepath.Abs(dir); err == nil {
		dir = a
	}
	return filepath.Join(dir, base)
}
