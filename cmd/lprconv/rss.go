package main

import "github.com/lprconv/lprconv/internal/peakrss"

// peakRSS returns the process's peak resident set size in bytes (0 when
// the platform does not report it); internal/peakrss has a file per OS.
func peakRSS() int64 {
	b, _ := peakrss.Bytes()
	return b
}
