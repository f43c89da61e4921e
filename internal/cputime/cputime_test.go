package cputime

import (
	"runtime"
	"testing"
	"time"
)

// TestProcessGrows: busy work on this goroutine raises the process's CPU
// time by 20 ms within at most 10 s of wall time (however loaded the
// machine), and it never goes backwards; where the platform has no figure,
// Process says so.
func TestProcessGrows(t *testing.T) {
	before, ok := Process()
	switch runtime.GOOS {
	case "linux", "darwin", "freebsd", "netbsd", "openbsd", "windows":
		if !ok {
			t.Fatalf("Process() unknown on %s", runtime.GOOS)
		}
	default:
		if ok {
			t.Fatalf("Process() = %v on %s, want unknown", before, runtime.GOOS)
		}
		return
	}
	x := 1.0
	var used time.Duration
	for end := time.Now().Add(10 * time.Second); used < 20*time.Millisecond && time.Now().Before(end); used = since(before) {
		for i := 0; i < 100000; i++ {
			x = x*1.0000001 + 1e-9
		}
	}
	if used < 20*time.Millisecond || x == 0 {
		t.Fatalf("10 s of busy work used %v of CPU time", used)
	}
	if s, ok := Seconds(); !ok || s < before.Seconds() {
		t.Fatalf("Seconds() = %v, %v; before %v", s, ok, before)
	}
}

// since returns the CPU time used since start (0 where it is unknown).
func since(start time.Duration) time.Duration {
	d, ok := Process()
	if !ok {
		return 0
	}
	return d - start
}
