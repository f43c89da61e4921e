package dataset

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lprconv/lprconv/internal/inputfile"
	"github.com/lprconv/lprconv/internal/testutil"
)

// TestBadInputCorpus is the data-set part of the hostile-input corpus
// (issue 11, cases 1, 6 and 7): forged headers whose sizes overflow, and
// special files (FIFOs, devices) given as data, labels or images. Each case
// must fail fast with an error naming the problem, without allocating by
// the header and without blocking.
func TestBadInputCorpus(t *testing.T) {
	const g = 1 << 32
	small := npyBytes("<f4", []int{1, 1, 2, 2}, float32Bytes([]float32{1, 2, 3, 4}))
	for _, tc := range []struct {
		name string
		// setup writes the case into dir and returns the data set path and
		// options to open it with.
		setup func(t *testing.T, dir string) (string, OpenOptions)
		// sample, when set, reads sample 0 and expects the error there
		// (listing an image folder reads no image).
		sample bool
		want   string // substring of the error
		notReg bool   // the error wraps inputfile.ErrNotRegular
	}{
		{
			// Case 1: c·y·x = 2^64 wraps to 0 in int64 and passed the size
			// check; Len() was then 2^32 and Indices allocated 32 GiB.
			name: "npy shape (2^32,2^32,2^32) <f4",
			setup: func(t *testing.T, dir string) (string, OpenOptions) {
				return writeFile(t, filepath.Join(dir, "overflow.npy"), npyBytes("<f4", []int{g, g, g}, nil)), OpenOptions{}
			},
			want: "too large",
		},
		{
			name: "npy shape (2^32,2^32,2^32,2^32) <f4",
			setup: func(t *testing.T, dir string) (string, OpenOptions) {
				return writeFile(t, filepath.Join(dir, "overflow4.npy"), npyBytes("<f4", []int{g, g, g, g}, nil)), OpenOptions{}
			},
			want: "too large",
		},
		{
			// N·(bytes per image) overflows int64 while each image is small.
			name: "npy N=2^62 images of 1x4x4 <f4",
			setup: func(t *testing.T, dir string) (string, OpenOptions) {
				return writeFile(t, filepath.Join(dir, "many.npy"), npyBytes("<f4", []int{1 << 62, 1, 4, 4}, nil)), OpenOptions{}
			},
			want: "overflows",
		},
		{
			name: "npy labels shape (2^62,) <i8",
			setup: func(t *testing.T, dir string) (string, OpenOptions) {
				x := writeFile(t, filepath.Join(dir, "x.npy"), small)
				y := writeFile(t, filepath.Join(dir, "y.npy"), npyBytes("<i8", []int{1 << 62}, nil))
				return x, OpenOptions{Labels: y}
			},
			want: "overflows",
		},
		{
			name: "idx 2^30 images of 64x64",
			setup: func(t *testing.T, dir string) (string, OpenOptions) {
				return writeFile(t, filepath.Join(dir, "big.idx"), idxBytes([]int{1 << 30, 64, 64}, nil)), OpenOptions{}
			},
			want: "too large",
		},
		{
			name: "gzip idx 2^30 images of 64x64",
			setup: func(t *testing.T, dir string) (string, OpenOptions) {
				return writeFile(t, filepath.Join(dir, "big.idx.gz"), gzipBytes(t, idxBytes([]int{1 << 30, 64, 64}, nil))), OpenOptions{}
			},
			want: "too large",
		},
		// Cases 6 and 7: special files.
		{
			name: "fifo as the npy file",
			setup: func(t *testing.T, dir string) (string, OpenOptions) {
				p := filepath.Join(dir, "pipe.npy")
				testutil.Mkfifo(t, p)
				return p, OpenOptions{}
			},
			notReg: true,
		},
		{
			name: "fifo with no known extension (sniffed)",
			setup: func(t *testing.T, dir string) (string, OpenOptions) {
				p := filepath.Join(dir, "pipe")
				testutil.Mkfifo(t, p)
				return p, OpenOptions{}
			},
			notReg: true,
		},
		{
			name: "fifo as the idx images file",
			setup: func(t *testing.T, dir string) (string, OpenOptions) {
				p := filepath.Join(dir, "pipe.idx")
				testutil.Mkfifo(t, p)
				return p, OpenOptions{}
			},
			notReg: true,
		},
		{
			name: "fifo as the idx labels file",
			setup: func(t *testing.T, dir string) (string, OpenOptions) {
				x := writeFile(t, filepath.Join(dir, "x.idx"), idxBytes([]int{1, 2, 2}, []byte{1, 2, 3, 4}))
				p := filepath.Join(dir, "labels.idx")
				testutil.Mkfifo(t, p)
				return x, OpenOptions{Labels: p}
			},
			notReg: true,
		},
		{
			name: "fifo as the npy labels file",
			setup: func(t *testing.T, dir string) (string, OpenOptions) {
				x := writeFile(t, filepath.Join(dir, "x.npy"), small)
				p := filepath.Join(dir, "labels.npy")
				testutil.Mkfifo(t, p)
				return x, OpenOptions{Labels: p}
			},
			notReg: true,
		},
		{
			name: "fifo in the IDX folder layout",
			setup: func(t *testing.T, dir string) (string, OpenOptions) {
				testutil.Mkfifo(t, filepath.Join(dir, "train-images-idx3-ubyte"))
				return dir, OpenOptions{}
			},
			notReg: true,
		},
		{
			name: "fifo named like an image in a class folder",
			setup: func(t *testing.T, dir string) (string, OpenOptions) {
				if err := os.MkdirAll(filepath.Join(dir, "0_cat"), 0o755); err != nil {
					t.Fatal(err)
				}
				testutil.Mkfifo(t, filepath.Join(dir, "0_cat", "a.png"))
				return dir, OpenOptions{}
			},
			sample: true,
			notReg: true,
		},
		{
			name: "/dev/zero as the data set",
			setup: func(t *testing.T, dir string) (string, OpenOptions) {
				if _, err := os.Stat("/dev/zero"); err != nil {
					testutil.Skipf(t, "no /dev/zero: %v", err)
				}
				return "/dev/zero", OpenOptions{}
			},
			notReg: true,
		},
		{
			name: "/dev/zero as the labels file",
			setup: func(t *testing.T, dir string) (string, OpenOptions) {
				if _, err := os.Stat("/dev/zero"); err != nil {
					testutil.Skipf(t, "no /dev/zero: %v", err)
				}
				return writeFile(t, filepath.Join(dir, "x.npy"), small), OpenOptions{Labels: "/dev/zero"}
			},
			notReg: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, opts := tc.setup(t, t.TempDir())
			done := make(chan error, 1)
			go func() {
				src, err := Open(path, opts)
				if err == nil {
					defer src.Close()
					if src.Len() > 1<<20 {
						err = errors.New("opened with a forged length")
					} else if tc.sample {
						_, err = src.Sample(0)
					}
				}
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("blocked on a special file (the test's goroutine stays blocked)")
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tc.notReg && !errors.Is(err, inputfile.ErrNotRegular) {
				t.Fatalf("err = %v, want one wrapping inputfile.ErrNotRegular", err)
			}
			if tc.want != "" && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}
