package dataset

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
)

// smallIDX returns 3 images of 2x3 pixels with pixel k of image i = 10*i+k,
// and labels 7, 0, 3.
func smallIDX() (images, labels []byte) {
	data := make([]byte, 3*6)
	for i := range data {
		data[i] = byte(10*(i/6) + i%6)
	}
	return idxBytes([]int{3, 2, 3}, data), idxBytes([]int{3}, []byte{7, 0, 3})
}

func checkSmallIDX(t *testing.T, src Source) {
	t.Helper()
	if src.Len() != 3 {
		t.Fatalf("Len = %d, want 3", src.Len())
	}
	wantLabels := []int{7, 0, 3}
	for i := 0; i < 3; i++ {
		s, err := src.Sample(i)
		if err != nil {
			t.Fatal(err)
		}
		if s.Channels != 1 || s.Height != 2 || s.Width != 3 || s.Label != wantLabels[i] {
			t.Fatalf("sample %d: shape %dx%dx%d label %d", i, s.Channels, s.Height, s.Width, s.Label)
		}
		for k, v := range s.Pix {
			if v != float32(10*i+k)/255 {
				t.Fatalf("sample %d pixel %d = %v, want %v", i, k, v, float32(10*i+k)/255)
			}
		}
	}
	if len(src.Classes()) != 8 {
		t.Errorf("classes %v, want 8 names (labels up to 7)", src.Classes())
	}
	if _, err := src.Sample(3); err == nil {
		t.Error("sample 3 of 3: no error")
	}
}

func TestIDX(t *testing.T) {
	img, lab := smallIDX()
	for _, gz := range []bool{false, true} {
		name := map[bool]string{false: "raw", true: "gz"}[gz]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			suffix := ""
			i, l := img, lab
			if gz {
				suffix = ".gz"
				i, l = gzipBytes(t, img), gzipBytes(t, lab)
			}
			writeFile(t, filepath.Join(dir, "train-images-idx3-ubyte"+suffix), i)
			writeFile(t, filepath.Join(dir, "train-labels-idx1-ubyte"+suffix), l)
			// The test split holds only the first image.
			testImg := idxBytes([]int{1, 2, 3}, img[16:22])
			writeFile(t, filepath.Join(dir, "t10k-images-idx3-ubyte"+suffix), map[bool][]byte{false: testImg, true: gzipBytes(t, testImg)}[gz])
			writeFile(t, filepath.Join(dir, "t10k-labels-idx1-ubyte"+suffix), map[bool][]byte{false: idxBytes([]int{1}, []byte{5}), true: gzipBytes(t, idxBytes([]int{1}, []byte{5}))}[gz])

			src, err := Open(dir, OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checkSmallIDX(t, src)
			src.Close()

			src, err = Open(filepath.Join(dir, "train-images-idx3-ubyte"+suffix), OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checkSmallIDX(t, src)
			src.Close()

			src, err = Open(dir, OpenOptions{Split: "test"})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			s, err := src.Sample(0)
			if err != nil || src.Len() != 1 || s.Label != 5 {
				t.Fatalf("test split: Len %d label %d err %v, want 1, 5", src.Len(), s.Label, err)
			}
		})
	}
}

func TestIDXErrors(t *testing.T) {
	img, lab := smallIDX()
	tests := []struct {
		name   string
		images []byte
		labels []byte
		want   string
	}{
		{"bad magic", append([]byte{1, 2, 8, 3}, img[4:]...), nil, "bad magic"},
		{"not bytes", append([]byte{0, 0, 0x0d, 3}, img[4:]...), nil, "not unsigned byte"},
		{"two dims", idxBytes([]int{3, 6}, img[16:]), nil, "need 3"},
		{"truncated", img[:len(img)-1], nil, "truncated"},
		{"short header", img[:7], nil, "header"},
		{"label count", img, idxBytes([]int{2}, []byte{1, 2}), "2 labels"},
		{"labels truncated", img, lab[:len(lab)-1], "truncated"},
		{"huge dims", idxBytes([]int{1 << 30, 1 << 20, 1 << 20}, nil), nil, "too large"},
	}
	for _, tc := range tests {
		for _, gz := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: "", true: " gz"}[gz], func(t *testing.T) {
				dir := t.TempDir()
				i, l := tc.images, tc.labels
				if gz {
					i = gzipBytes(t, i)
					if l != nil {
						l = gzipBytes(t, l)
					}
				}
				ip := writeFile(t, filepath.Join(dir, "images.idx"), i)
				lp := ""
				if l != nil {
					lp = writeFile(t, filepath.Join(dir, "labels.idx"), l)
				}
				src, err := OpenIDX(ip, lp)
				if err == nil {
					src.Close()
					t.Fatalf("no error, want %q", tc.want)
				}
				if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
					t.Fatalf("err = %v, want %q and the path", err, tc.want)
				}
			})
		}
	}
}

// TestFashionMNIST reads Debian's dataset-fashion-mnist package. Its
// classes are balanced: 6000 images per class in train, 1000 in test.
func TestFashionMNIST(t *testing.T) {
	const dir = "/usr/share/datasets/fashion-mnist"
	if _, err := os.Stat(filepath.Join(dir, "t10k-images-idx3-ubyte.gz")); err != nil {
		testutil.Skipf(t, "Fashion-MNIST not installed (apt install dataset-fashion-mnist): %v", err)
	}
	for _, tc := range []struct {
		split    string
		n, per   int
		loadRest bool
	}{{"test", 10000, 1000, true}, {"train", 60000, 6000, !testing.Short()}} {
		t.Run(tc.split, func(t *testing.T) {
			src, err := Open(dir, OpenOptions{Split: tc.split})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			if src.Len() != tc.n || len(src.Classes()) != 10 {
				t.Fatalf("Len %d classes %d, want %d and 10", src.Len(), len(src.Classes()), tc.n)
			}
			counts := make([]int, 10)
			var s Sample
			var lo, hi float32 = 1, 0
			for i := 0; i < src.Len(); i++ {
				if err := src.ReadSample(i, &s); err != nil {
					t.Fatal(err)
				}
				if s.Height != 28 || s.Width != 28 || s.Channels != 1 {
					t.Fatalf("sample %d shape %dx%dx%d", i, s.Channels, s.Height, s.Width)
				}
				counts[s.Label]++
				for _, v := range s.Pix {
					lo, hi = min(lo, v), max(hi, v)
				}
			}
			for c, n := range counts {
				if n != tc.per {
					t.Errorf("class %d has %d images, want %d", c, n, tc.per)
				}
			}
			if lo != 0 || hi != 1 {
				t.Errorf("pixel range [%v,%v], want [0,1]", lo, hi)
			}
		})
	}
}
