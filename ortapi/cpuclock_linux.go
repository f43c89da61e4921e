//go:build linux

package ortapi

import (
	"fmt"
	"syscall"
	"time"
	"unsafe"
)

// clockProcessCPUTimeID is Linux's CLOCK_PROCESS_CPUTIME_ID.
const clockProcessCPUTimeID = 2

// ProcessCPUClock returns a clock of the CPU time of all the process's
// threads (clock_gettime(CLOCK_PROCESS_CPUTIME_ID), nanosecond
// resolution). With one intra-op thread it measures the work ONNX Runtime
// does without the time the process waits for a CPU on a busy machine.
func ProcessCPUClock() (Clock, error) {
	if _, err := processCPUTime(); err != nil {
		return nil, fmt.Errorf("process CPU clock: %w", err)
	}
	return func() time.Duration { d, _ := processCPUTime(); return d }, nil
}

func processCPUTime() (time.Duration, error) {
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockProcessCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0, e
	}
	return time.Duration(ts.Nano()), nil
}
