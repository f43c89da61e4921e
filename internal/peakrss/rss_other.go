//go:build !linux && !darwin && !windows

package peakrss

// Bytes reports that the peak resident set size is unknown on this
// platform.
func Bytes() (int64, bool) { return 0, false }
