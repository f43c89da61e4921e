//go:build windows

package ortapi

import (
	"fmt"
	"syscall"
	"time"
)

// ProcessCPUClock returns a clock of the CPU time of all the process's
// threads (user plus kernel, from GetProcessTimes).
func ProcessCPUClock() (Clock, error) {
	h, err := syscall.GetCurrentProcess()
	if err != nil {
		return nil, fmt.Errorf("process CPU clock: %w", err)
	}
	read := func() (time.Duration, error) {
		var c, e, k, u syscall.Filetime
		if err := syscall.GetProcessTimes(h, &c, &e, &k, &u); err != nil {
			return 0, err
		}
		ticks := int64(k.HighDateTime)<<32 | int64(k.LowDateTime) + int64(u.HighDateTime)<<32 | int64(u.LowDateTime)
		return time.Duration(ticks * 100), nil
	}
	if _, err := read(); err != nil {
		return nil, fmt.Errorf("process CPU clock: %w", err)
	}
	return func() time.Duration { d, _ := read(); return d }, nil
}
