//go:build darwin || freebsd || netbsd

package ortapi

import (
	"fmt"
	"syscall"
	"time"
)

// ProcessCPUClock returns a clock of the CPU time of all the process's
// threads (user plus system, from getrusage, microsecond resolution). With one intra-op thread it
// measures the work ONNX Runtime does without the time the process waits
// for a CPU on a busy machine.
func ProcessCPUClock() (Clock, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return nil, fmt.Errorf("process CPU clock: %w", err)
	}
	return func() time.Duration {
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}, nil
}
