// Package ortapi runs ONNX models in ONNX Runtime, the runtime lprconv's
// users deploy to, by calling its C API through
// github.com/ebitengine/purego. The library is loaded at run time (Load),
// so every build of lprconv, CGO_ENABLED=0 included, can measure latency
// wherever an ONNX Runtime library (1.24 or newer) is present, and works
// without one.
//
// The package has three parts: the runtime and its sessions (Load,
// Runtime.NewSession, Session.Run), library discovery (Find), and a timing
// helper that runs several candidates interleaved and compares their
// medians (Interleave, PairedRatio).
package ortapi

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"
)

var errNUL = errors.New("path contains a NUL byte")

// Runtime is a loaded ONNX Runtime library with its environment. Its
// methods may be called from several goroutines. The library stays loaded
// for the life of the process (unloading a library that owns thread pools
// is not safe); Close releases the environment.
type Runtime struct {
	path    string
	version string
	fns     *api
	env     uintptr // OrtEnv*
	alloc   uintptr // OrtAllocator* of the default CPU allocator (not owned)
}

// Load loads the ONNX Runtime shared library at libPath (e.g.
// libonnxruntime.so.1, libonnxruntime.dylib or onnxruntime.dll) and
// creates an environment that logs errors only. It refuses libraries older
// than 1.24 and files that are not ONNX Runtime; its errors are one line
// and name the file.
func Load(libPath string) (*Runtime, error) {
	st, err := os.Stat(libPath)
	if err != nil {
		return nil, fmt.Errorf("ONNX Runtime library %s: %w", libPath, oneLine(err))
	}
	if st.IsDir() {
		return nil, fmt.Errorf("ONNX Runtime library %s is a directory, want the library file", libPath)
	}
	getBase, err := openLibrary(libPath)
	if err != nil {
		return nil, fmt.Errorf("load ONNX Runtime library %s: %w", libPath, err)
	}
	base, _, _ := syscallN(getBase)
	if base == 0 {
		return nil, fmt.Errorf("load ONNX Runtime library %s: OrtGetApiBase returned NULL", libPath)
	}
	// OrtApiBase is {GetApi, GetVersionString}.
	getAPI := *(*uintptr)(ptr(base))
	getVersion := *(*uintptr)(unsafe.Add(ptr(base), unsafe.Sizeof(uintptr(0))))
	v, _, _ := syscallN(getVersion)
	version := goString(v)
	if err := checkVersion(version); err != nil {
		return nil, fmt.Errorf("ONNX Runtime library %s: %w", libPath, err)
	}
	table, _, _ := syscallN(getAPI, apiVersion)
	if table == 0 {
		return nil, fmt.Errorf("ONNX Runtime library %s (version %s) does not provide API version %d", libPath, version, apiVersion)
	}
	fns := new(api)
	for i := range fns {
		fns[i] = *(*uintptr)(unsafe.Add(ptr(table), i*int(unsafe.Sizeof(uintptr(0)))))
	}
	rt := &Runtime{path: libPath, version: version, fns: fns}
	logID := cString("lprconv")
	if err := fns.call(fnCreateEnv, loggingLevelError, uintptr(unsafe.Pointer(&logID[0])), uintptr(unsafe.Pointer(&rt.env))); err != nil {
		return nil, fmt.Errorf("ONNX Runtime library %s: create environment: %w", libPath, err)
	}
	if err := fns.call(fnGetAllocatorWithDefaultOptions, uintptr(unsafe.Pointer(&rt.alloc))); err != nil {
		rt.Close()
		return nil, fmt.Errorf("ONNX Runtime library %s: default allocator: %w", libPath, err)
	}
	return rt, nil
}

// checkVersion accepts "MAJOR.MINOR[.PATCH...]" at or above 1.24.
func checkVersion(v string) error {
	f := strings.SplitN(v, ".", 3)
	if len(f) < 2 {
		return fmt.Errorf("unrecognised version %q (not an ONNX Runtime library?)", v)
	}
	major, err1 := strconv.Atoi(f[0])
	minor, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("unrecognised version %q (not an ONNX Runtime library?)", v)
	}
	if major < 1 || (major == 1 && minor < minMinor) {
		return fmt.Errorf("version %s is too old: lprconv needs ONNX Runtime 1.%d or newer", v, minMinor)
	}
	return nil
}

// Path returns the file the library was loaded from.
func (r *Runtime) Path() string { return r.path }

// Version returns the library's version string, e.g. "1.24.3".
func (r *Runtime) Version() string { return r.version }

// Close releases the environment. Sessions must be closed first. It is
// safe to call more than once.
func (r *Runtime) Close() error {
	if r.env != 0 {
		r.fns.release(fnReleaseEnv, r.env)
		r.env = 0
	}
	return nil
}

// oneLine joins the lines of err's message, so that loader messages that
// span lines stay one line.
func oneLine(err error) error {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}
