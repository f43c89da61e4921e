package dataset

import (
	"path/filepath"
	"reflect"
	"testing"
)

func TestOpenDetectsKind(t *testing.T) {
	dir := t.TempDir()
	img, lab := smallIDX()
	idxDir := filepath.Join(dir, "mnist")
	writeFile(t, filepath.Join(idxDir, "train-images-idx3-ubyte.gz"), gzipBytes(t, img))
	writeFile(t, filepath.Join(idxDir, "train-labels-idx1-ubyte.gz"), gzipBytes(t, lab))
	oddIDX := writeFile(t, filepath.Join(dir, "pictures.bin"), img)
	npy := writeFile(t, filepath.Join(dir, "x.npy"), npyBytes("|u1", []int{1, 1, 1, 1}, []byte{1}))
	oddNPY := writeFile(t, filepath.Join(dir, "array.dat"), npyBytes("|u1", []int{1, 1, 1, 1}, []byte{1}))
	imgDir := filepath.Join(dir, "imgs")
	writePNG(t, filepath.Join(imgDir, "a", "x.png"), grayImage(1, 1, func(int, int) uint8 { return 0 }))
	unknown := writeFile(t, filepath.Join(dir, "notes.txt"), []byte("hello"))

	tests := []struct {
		path string
		want reflect.Type
	}{
		{idxDir, reflect.TypeFor[*IDX]()},
		{oddIDX, reflect.TypeFor[*IDX]()},
		{npy, reflect.TypeFor[*NPY]()},
		{oddNPY, reflect.TypeFor[*NPY]()},
		{imgDir, reflect.TypeFor[*Folder]()},
	}
	for _, tc := range tests {
		src, err := Open(tc.path, OpenOptions{})
		if err != nil {
			t.Errorf("Open(%s): %v", tc.path, err)
			continue
		}
		if reflect.TypeOf(src) != tc.want {
			t.Errorf("Open(%s) = %T, want %v", tc.path, src, tc.want)
		}
		src.Close()
	}
	for _, bad := range []struct {
		path string
		opts OpenOptions
	}{
		{unknown, OpenOptions{}},
		{filepath.Join(dir, "missing"), OpenOptions{}},
		{idxDir, OpenOptions{Split: "validation"}},
		{idxDir, OpenOptions{Split: "test"}}, // no t10k files: falls back to a folder with no images
		{imgDir, OpenOptions{Labels: npy}},
	} {
		if src, err := Open(bad.path, bad.opts); err == nil {
			src.Close()
			t.Errorf("Open(%s, %+v): no error", bad.path, bad.opts)
		}
	}
}
