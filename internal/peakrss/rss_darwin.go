package peakrss

import "syscall"

// Bytes returns the process's peak resident set size in bytes, and false
// when it cannot be read. macOS gives ru_maxrss in bytes (not KiB as
// Linux does).
func Bytes() (int64, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil || ru.Maxrss <= 0 {
		return 0, false
	}
	return int64(ru.Maxrss), true
}
