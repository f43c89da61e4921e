package peakrss

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestBytesAgainstProc compares Bytes with the kernel's own figure on
// Linux (VmHWM in /proc/self/status, in kB), read right after: the peak can
// only grow between the two reads, and by little.
func TestBytesAgainstProc(t *testing.T) {
	buf := make([]byte, 64<<20) // make the peak at least 64 MiB
	for i := range buf {
		buf[i] = byte(i)
	}
	got, ok := Bytes()
	runtime.KeepAlive(buf)
	switch runtime.GOOS {
	case "linux", "darwin", "windows":
		if !ok || got < 64<<20 {
			t.Fatalf("Bytes() = %d, %v after touching 64 MiB", got, ok)
		}
	default:
		if ok || String() != "unknown" {
			t.Fatalf("Bytes() = %d, %v on %s, want unknown", got, ok, runtime.GOOS)
		}
		return
	}
	if runtime.GOOS != "linux" {
		return
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			if hwm := kb * 1024; got > hwm || got < hwm-(8<<20) {
				t.Fatalf("Bytes() = %d, /proc says VmHWM %d", got, hwm)
			}
			if s := String(); !strings.HasSuffix(s, " MiB") {
				t.Errorf("String() = %q", s)
			}
			return
		}
	}
	t.Fatal("no VmHWM line in /proc/self/status")
}
