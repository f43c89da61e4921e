//go:build linux

package main

import (
	"syscall"
	"time"
	"unsafe"
)

// cpuNow reads CLOCK_PROCESS_CPUTIME_ID (clock id 2): the CPU time all
// threads of the process have used. With one intra-op thread, ONNX Runtime
// computes on the calling thread, so differences of this clock leave out
// the time spent waiting for a core on a shared machine.
func cpuNow() (time.Duration, bool) {
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 2, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
