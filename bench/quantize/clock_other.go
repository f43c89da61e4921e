//go:build !linux

package main

import "time"

// cpuNow is unavailable here: the benchmark falls back to wall time.
func cpuNow() (time.Duration, bool) { return 0, false }
