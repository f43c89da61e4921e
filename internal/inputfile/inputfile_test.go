package inputfile

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/lprconv/lprconv/internal/testutil"
)

// specialFiles makes a FIFO and a Unix socket in a temporary folder and
// returns them with /dev/zero and /dev/null (where they exist).
func specialFiles(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	if runtime.GOOS == "windows" {
		return out
	}
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	testutil.Mkfifo(t, fifo)
	out["fifo"] = fifo
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listen on a unix socket: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	out["socket"] = sock
	out["/dev/zero"] = "/dev/zero"
	out["/dev/null"] = "/dev/null"
	link := filepath.Join(dir, "link-to-fifo")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	out["symlink to fifo"] = link
	return out
}

func TestRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "regular")
	if err := os.WriteFile(reg, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, p := range specialFiles(t) {
		t.Run(name, func(t *testing.T) {
			done := make(chan error, 3)
			go func() {
				f, err := Open(p)
				if f != nil {
					f.Close()
				}
				done <- err
				_, err = ReadFile(p, 1<<20)
				done <- err
				_, err = Check(p, true)
				done <- err
			}()
			for range 3 {
				select {
				case err := <-done:
					if !errors.Is(err, ErrNotRegular) {
						t.Fatalf("err = %v, want ErrNotRegular", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("blocked on a special file")
				}
			}
		})
	}
	// A regular file and a directory (where allowed) pass.
	if data, err := ReadFile(reg, 5); err != nil || string(data) != "hello" {
		t.Errorf("ReadFile(regular) = %q, %v", data, err)
	}
	if _, err := ReadFile(reg, 4); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadFile over the limit: err = %v, want ErrTooLarge", err)
	}
	if _, err := Check(dir, true); err != nil {
		t.Errorf("Check(dir, dirOK) = %v", err)
	}
	if _, err := Check(dir, false); !errors.Is(err, ErrNotRegular) {
		t.Errorf("Check(dir, !dirOK) = %v, want ErrNotRegular", err)
	}
	if _, err := Open(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want ErrNotExist", err)
	}
}
