package ortapi

import (
	"fmt"
	"os"

	"github.com/lprconv/lprconv/internal/ortrun/libpath"
)

// EnvVar names the environment variable that gives the library's path
// when no path is passed on the command line.
const EnvVar = libpath.EnvVar

// Find returns the ONNX Runtime library to load: flagPath when non-empty
// (the value of a command's --ort-lib flag; it must be an existing file),
// otherwise $ONNXRUNTIME_LIB, otherwise the newest
// <version>/libonnxruntime.so.1 in the cache that .ci/run fills (see
// libpath.CacheDirs). The error says where it looked.
func Find(flagPath string) (string, error) {
	if flagPath == "" {
		return libpath.Find()
	}
	st, err := os.Stat(flagPath)
	if err != nil {
		return "", fmt.Errorf("ONNX Runtime library from --ort-lib: %w", oneLine(err))
	}
	if st.IsDir() {
		return "", fmt.Errorf("ONNX Runtime library from --ort-lib: %s is a directory, want the library file", flagPath)
	}
	return flagPath, nil
}

// Open finds the library (see Find) and loads it (see Load).
func Open(flagPath string) (*Runtime, error) {
	p, err := Find(flagPath)
	if err != nil {
		return nil, err
	}
	return Load(p)
}
