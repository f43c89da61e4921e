package cputime

import (
	"time"

	"golang.org/x/sys/windows"
)

// Process returns the user plus kernel CPU time of the process, and false
// when it cannot be read. Windows counts both in 100 ns units.
func Process() (time.Duration, bool) {
	var creation, exit, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(windows.CurrentProcess(), &creation, &exit, &kernel, &user); err != nil {
		return 0, false
	}
	ticks := func(f windows.Filetime) int64 { return int64(f.HighDateTime)<<32 | int64(f.LowDateTime) }
	return time.Duration(ticks(kernel)+ticks(user)) * 100, true
}
