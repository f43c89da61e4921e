// Package cputime reports the CPU time the running process has used (user
// plus system, summed over its threads), with one file per operating
// system: getrusage on Unix and GetProcessTimes on Windows. Elsewhere it
// is unknown. The benchmarks use it next to wall time: on a shared or
// oversubscribed machine CPU time per image moves less than wall time.
package cputime

// Seconds returns Process in seconds, and false where it is unknown.
func Seconds() (float64, bool) {
	d, ok := Process()
	return d.Seconds(), ok
}
