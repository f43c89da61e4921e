package dataset

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestNPY(t *testing.T) {
	// 2 images of 2x1x3: float32 values i + k/10, uint8 values 50*i + k.
	f32 := make([]float32, 12)
	u8 := make([]byte, 12)
	for i := range f32 {
		f32[i] = float32(i/6) + float32(i%6)/10
		u8[i] = byte(50*(i/6) + i%6)
	}
	tests := []struct {
		name      string
		data      []byte
		labels    []byte // file contents, nil for none
		labelsExt string
		want      func(i, k int) float32
		wantLab   []int
	}{
		{"float32 int64 labels", npyBytes("<f4", []int{2, 2, 1, 3}, float32Bytes(f32)), npyBytes("<i8", []int{2}, int64Bytes([]int64{4, 1})), ".npy",
			func(i, k int) float32 { return f32[6*i+k] }, []int{4, 1}},
		{"uint8 int32 labels", npyBytes("|u1", []int{2, 2, 1, 3}, u8), npyBytes("<i4", []int{2}, int32Bytes([]int32{0, 9})), ".npy",
			func(i, k int) float32 { return float32(u8[6*i+k]) / 255 }, []int{0, 9}},
		{"uint8 text labels", npyBytes("|u1", []int{2, 2, 1, 3}, u8), []byte("3\n\n2\n"), ".txt",
			func(i, k int) float32 { return float32(u8[6*i+k]) / 255 }, []int{3, 2}},
		{"float32 unlabelled", npyBytes("<f4", []int{2, 2, 1, 3}, float32Bytes(f32)), nil, "",
			func(i, k int) float32 { return f32[6*i+k] }, []int{-1, -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, lp := writeNPYPair(t, t.TempDir(), tc.data, tc.labels, "y"+tc.labelsExt)
			src, err := Open(p, OpenOptions{Labels: lp})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			if src.Len() != 2 {
				t.Fatalf("Len = %d, want 2", src.Len())
			}
			for i := 0; i < 2; i++ {
				s, err := src.Sample(i)
				if err != nil {
					t.Fatal(err)
				}
				if s.Channels != 2 || s.Height != 1 || s.Width != 3 || s.Label != tc.wantLab[i] {
					t.Fatalf("sample %d: shape %dx%dx%d label %d, want 2x1x3 label %d", i, s.Channels, s.Height, s.Width, s.Label, tc.wantLab[i])
				}
				for k, v := range s.Pix {
					if v != tc.want(i, k) {
						t.Fatalf("sample %d value %d = %v, want %v", i, k, v, tc.want(i, k))
					}
				}
			}
		})
	}
}

func TestNPYThreeDims(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, filepath.Join(dir, "x.npy"), npyBytes("|u1", []int{1, 2, 2}, []byte{0, 255, 51, 102}))
	src, err := OpenNPY(p, "")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	s, err := src.Sample(0)
	if err != nil || s.Channels != 1 || s.Height != 2 || s.Width != 2 || s.Pix[1] != 1 || s.Pix[2] != 0.2 {
		t.Fatalf("sample %+v err %v", s, err)
	}
}

func TestNPYErrors(t *testing.T) {
	good := npyBytes("<f4", []int{1, 1, 1, 2}, float32Bytes([]float32{1, 2}))
	fortran := bytes.Replace(good, []byte("'fortran_order': False"), []byte("'fortran_order': True "), 1)
	tests := []struct {
		name   string
		data   []byte
		labels []byte
		want   string
	}{
		{"no magic", []byte("NUMPY\x01\x00...."), nil, "magic"},
		{"version", append([]byte(npyMagic+"\x09\x00"), good[8:]...), nil, "version"},
		{"float64", npyBytes("<f8", []int{1, 1, 1, 2}, make([]byte, 16)), nil, "not supported"},
		{"fortran", fortran, nil, "Fortran"},
		{"shape", npyBytes("<f4", []int{2, 2}, make([]byte, 16)), nil, "want (N,C,H,W)"},
		{"truncated", good[:len(good)-1], nil, "truncated"},
		{"short header", good[:20], nil, "header"},
		{"no shape key", bytes.Replace(good, []byte("'shape'"), []byte("'shope'"), 1), nil, "shape"},
		{"label count", good, npyBytes("<i8", []int{2}, int64Bytes([]int64{1, 2})), "2 labels"},
		{"label type", good, npyBytes("<f4", []int{1}, float32Bytes([]float32{1})), "not an integer"},
		{"label text", good, []byte("cat\n"), "not an integer"},
		{"negative label", good, []byte("-1\n"), "out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p, lp := writeNPYPair(t, dir, tc.data, tc.labels, "labels")
			src, err := OpenNPY(p, lp)
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

func TestParseNPYDict(t *testing.T) {
	h, err := parseNPYDict(`{"descr": "<f4", "shape": (3, 1, 28, 28), "fortran_order": False}`)
	if err != nil || h.descr != "<f4" || h.fortran || len(h.shape) != 4 || h.shape[2] != 28 {
		t.Fatalf("got %+v, %v", h, err)
	}
	h, err = parseNPYDict(`{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }`)
	if err != nil || len(h.shape) != 1 || h.shape[0] != 5 {
		t.Fatalf("got %+v, %v", h, err)
	}
}
