//go:build !((darwin || linux) && !android) && !windows

package ortapi

import (
	"fmt"
	"runtime"
)

// openLibrary reports that loading a shared library is not supported.
func openLibrary(path string) (uintptr, error) {
	return 0, fmt.Errorf("loading a shared library is not supported on %s", runtime.GOOS)
}

// osPath is never reached: no library can be loaded.
func osPath(path string) ([]byte, error) { return cString(path), nil }

// syscallN is never reached: no library can be loaded.
func syscallN(fn uintptr, args ...uintptr) (r1, r2, err uintptr) { return 0, 0, 0 }
