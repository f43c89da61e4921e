//go:build (darwin || linux) && !android

package ortapi

import (
	"strings"

	"github.com/ebitengine/purego"
)

// openLibrary loads the shared library at path and returns the address of
// its OrtGetApiBase.
func openLibrary(path string) (uintptr, error) {
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return 0, oneLine(err)
	}
	sym, err := purego.Dlsym(h, "OrtGetApiBase")
	if err != nil {
		purego.Dlclose(h)
		return 0, oneLine(err)
	}
	return sym, nil
}

// osPath returns path as ONNX Runtime's ORTCHAR_T string: UTF-8 bytes,
// NUL-terminated, outside Windows.
func osPath(path string) ([]byte, error) {
	if strings.IndexByte(path, 0) >= 0 {
		return nil, errNUL
	}
	return cString(path), nil
}
