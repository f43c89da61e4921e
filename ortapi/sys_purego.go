//go:build ((darwin || linux) && !android) || windows

package ortapi

import "github.com/ebitengine/purego"

// syscallN calls the C function at fn with integer and pointer arguments.
//
//go:uintptrescapes
func syscallN(fn uintptr, args ...uintptr) (r1, r2, err uintptr) {
	return purego.SyscallN(fn, args...)
}
