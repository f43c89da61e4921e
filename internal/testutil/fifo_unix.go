//go:build unix

package testutil

import (
	"syscall"
	"testing"
)

// Mkfifo creates a named pipe at path for tests of inputs that must be
// refused; it fails the test when the pipe cannot be made.
func Mkfifo(t testing.TB, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatalf("mkfifo %s: %v", path, err)
	}
}
