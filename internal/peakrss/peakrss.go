// Package peakrss reports the peak resident set size of the running
// process, with one file per operating system since each reports it in its
// own way: getrusage's ru_maxrss in KiB on Linux and in bytes on macOS, and
// the peak working set from GetProcessMemoryInfo on Windows. Elsewhere the
// value is unknown.
package peakrss

import "fmt"

// String formats the peak resident set size in MiB, or "unknown" where the
// platform does not report it.
func String() string {
	b, ok := Bytes()
	if !ok {
		return "unknown"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
