//go:build !unix && !windows

package cputime

import "time"

// Process reports that the process's CPU time is unknown on this platform.
func Process() (time.Duration, bool) { return 0, false }
