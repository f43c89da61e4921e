//go:build linux

package main

import (
	"syscall"
	"time"
	"unsafe"
)

// processCPUTime returns the CPU time of all threads of the process
// (CLOCK_PROCESS_CPUTIME_ID). On a busy machine it measures the work ONNX
// Runtime does without the time the process waits for a CPU.
func processCPUTime() (time.Duration, bool) {
	var ts syscall.Timespec
	const clockProcessCPUTimeID = 2
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockProcessCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
