//go:build !unix

package testutil

import "testing"

// Mkfifo skips the test (see Skip): this platform has no named pipes in
// the file system.
func Mkfifo(t testing.TB, path string) {
	t.Helper()
	Skipf(t, "no named pipes on this platform to make %s", path)
}
