//go:build !(darwin || freebsd || linux || netbsd || windows)

package ortapi

import (
	"fmt"
	"runtime"
)

// ProcessCPUClock reports that process CPU time is not available here.
func ProcessCPUClock() (Clock, error) {
	return nil, fmt.Errorf("process CPU clock: not supported on %s", runtime.GOOS)
}
