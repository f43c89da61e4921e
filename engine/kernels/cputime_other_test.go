//go:build !linux

package kernels

import "time"

var start = time.Now()

// threadCPUTime falls back to wall-clock time off Linux.
func threadCPUTime() time.Duration { return time.Since(start) }

// processCPUTime falls back to wall-clock time off Linux.
func processCPUTime() time.Duration { return time.Since(start) }
