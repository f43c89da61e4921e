//go:build !linux

package main

import "time"

// processCPUTime is not available here; latency falls back to wall time.
func processCPUTime() (time.Duration, bool) { return 0, false }
