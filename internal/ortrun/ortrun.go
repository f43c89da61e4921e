// Package ortrun is the process-wide convenience layer over package ortapi
// that lprconv's tests and benchmarks use: one ONNX Runtime, found by
// LibraryPath and loaded on first use, shared by every caller in the
// process.
//
// New code that is handed a library path (a command's --ort-lib flag)
// should load it with ortapi.Open and keep the *ortapi.Runtime; ortrun is
// for callers that just want "the" runtime.
package ortrun

import (
	"fmt"
	"sync"

	"github.com/lprconv/lprconv/internal/ortrun/libpath"
	"github.com/lprconv/lprconv/ortapi"
)

// Tensor is a dense float32 tensor in row-major order.
type Tensor = ortapi.Tensor

// Info describes one input or output of a model as ONNX Runtime sees it.
type Info = ortapi.Info

// OptLevel is ONNX Runtime's graph optimization level.
type OptLevel = ortapi.OptLevel

// Graph optimization levels (see ortapi.OptLevel).
const (
	OptAll      = ortapi.OptAll
	OptExtended = ortapi.OptExtended
	OptBasic    = ortapi.OptBasic
	OptDisabled = ortapi.OptDisabled
)

// ParseOptLevel parses "all", "extended", "basic" or "disabled".
func ParseOptLevel(s string) (OptLevel, error) { return ortapi.ParseOptLevel(s) }

// Options configures a session (see ortapi.Options). The zero value runs
// on one intra-op thread with every graph optimization.
type Options = ortapi.Options

// Session is a model loaded into ONNX Runtime (see ortapi.Session).
type Session = ortapi.Session

// LibraryPath returns the path of libonnxruntime.so.1: $ONNXRUNTIME_LIB when
// set, otherwise the newest <version>/libonnxruntime.so.1 under
// /root/.cache/lprconv/ort, $XDG_CACHE_HOME/lprconv/ort or
// ~/.cache/lprconv/ort.
func LibraryPath() (string, error) {
	return libpath.Find()
}

// shared is the process's runtime. It is package-level because callers of
// this package (tests in many packages, benchmarks) share one runtime per
// process without passing it around; the sync.Once makes the first use
// safe from any number of goroutines. Code that can pass a runtime uses
// package ortapi directly and holds no global.
var shared struct {
	once sync.Once
	rt   *ortapi.Runtime
	err  error
}

// Init loads the ONNX Runtime library found by LibraryPath. It runs once
// per process; later calls return the first call's result. Every other
// function in this package calls it.
func Init() error {
	_, err := Runtime()
	return err
}

// Runtime returns the process's runtime, loading it on first use.
func Runtime() (*ortapi.Runtime, error) {
	shared.once.Do(func() {
		lib, err := LibraryPath()
		if err != nil {
			shared.err = err
			return
		}
		shared.rt, shared.err = ortapi.Load(lib)
	})
	return shared.rt, shared.err
}

// Version returns the version string of the loaded ONNX Runtime library.
func Version() (string, error) {
	rt, err := Runtime()
	if err != nil {
		return "", err
	}
	return rt.Version(), nil
}

// InputOutputInfo returns the inputs and outputs of the model at path, in
// the model's order.
func InputOutputInfo(path string) (inputs, outputs []Info, err error) {
	s, err := NewSession(path, Options{Optimization: OptDisabled})
	if err != nil {
		return nil, nil, err
	}
	defer s.Close()
	return s.Inputs(), s.Outputs(), nil
}

// NewSession loads the model at path into the process's runtime with opts.
func NewSession(path string, opts Options) (*Session, error) {
	rt, err := Runtime()
	if err != nil {
		return nil, err
	}
	return rt.NewSessionFromFile(path, opts)
}

// Run loads the model at path with default Options, runs it once and
// closes it. See ortapi.Session.Run.
func Run(modelPath string, inputs map[string]Tensor, outputNames []string) (map[string]Tensor, error) {
	s, err := NewSession(modelPath, Options{})
	if err != nil {
		return nil, err
	}
	out, err := s.Run(inputs, outputNames)
	if cerr := s.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close session of %s: %w", modelPath, cerr)
	}
	return out, err
}
