package dataset

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
)

func TestFolderLabelsAndClasses(t *testing.T) {
	px := func(x, y int) uint8 { return uint8(x + y) }
	tests := []struct {
		name        string
		folders     []string
		wantClasses []string
		// label of each folder in the order given
		wantLabels []int
	}{
		{
			name:        "indexed folders use the index, not the sort order",
			folders:     []string{"2_bird", "10_cat", "0_ant", "1_bee", "3_dog", "4_e", "5_f", "6_g", "7_h", "8_i", "9_j"},
			wantClasses: []string{"ant", "bee", "bird", "dog", "e", "f", "g", "h", "i", "j", "cat"},
			wantLabels:  []int{2, 10, 0, 1, 3, 4, 5, 6, 7, 8, 9},
		},
		{
			name:        "plain names use sorted order",
			folders:     []string{"cat", "ant", "bee"},
			wantClasses: []string{"ant", "bee", "cat"},
			wantLabels:  []int{2, 0, 1},
		},
		{
			name:        "one folder without an index falls back to sorted order",
			folders:     []string{"1_b", "0_a", "zebra"},
			wantClasses: []string{"0_a", "1_b", "zebra"},
			wantLabels:  []int{1, 0, 2},
		},
		{
			name:        "leading zeros",
			folders:     []string{"01_b", "00_a"},
			wantClasses: []string{"a", "b"},
			wantLabels:  []int{1, 0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			want := map[string]int{}
			for i, f := range tc.folders {
				for j := 0; j < 2; j++ {
					p := filepath.Join(root, f, string(rune('a'+j))+".png")
					writePNG(t, p, grayImage(3, 2, px))
					want[p] = tc.wantLabels[i]
				}
			}
			// A non-image file must be ignored.
			writeFile(t, filepath.Join(root, tc.folders[0], "notes.txt"), []byte("x"))
			src, err := Open(root, OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			if got := src.Classes(); !reflect.DeepEqual(got, tc.wantClasses) {
				t.Errorf("classes = %q, want %q", got, tc.wantClasses)
			}
			if src.Len() != 2*len(tc.folders) {
				t.Fatalf("Len = %d, want %d", src.Len(), 2*len(tc.folders))
			}
			for i := 0; i < src.Len(); i++ {
				s, err := src.Sample(i)
				if err != nil {
					t.Fatal(err)
				}
				if w, ok := want[s.Path]; !ok || s.Label != w {
					t.Errorf("sample %d %s: label %d, want %d", i, s.Path, s.Label, w)
				}
			}
		})
	}
}

func TestFolderDuplicateIndex(t *testing.T) {
	root := t.TempDir()
	writePNG(t, filepath.Join(root, "0_a", "x.png"), grayImage(1, 1, func(int, int) uint8 { return 0 }))
	writePNG(t, filepath.Join(root, "00_b", "x.png"), grayImage(1, 1, func(int, int) uint8 { return 0 }))
	_, err := Open(root, OpenOptions{})
	if err == nil || !strings.Contains(err.Error(), "class index 0") {
		t.Fatalf("err = %v, want duplicate class index error", err)
	}
}

func TestFolderUnlabelled(t *testing.T) {
	root := t.TempDir()
	for _, n := range []string{"b.png", "a.jpg", "c.JPEG"} {
		p := filepath.Join(root, n)
		if strings.HasSuffix(n, ".png") {
			writePNG(t, p, grayImage(2, 2, func(x, y int) uint8 { return 9 }))
		} else {
			writeJPEG(t, p, grayImage(8, 8, func(x, y int) uint8 { return 9 }))
		}
	}
	src, err := Open(root, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if src.Len() != 3 || src.Classes() != nil {
		t.Fatalf("Len %d classes %v, want 3 and nil", src.Len(), src.Classes())
	}
	wantOrder := []string{"a.jpg", "b.png", "c.JPEG"}
	for i := 0; i < 3; i++ {
		s, err := src.Sample(i)
		if err != nil {
			t.Fatal(err)
		}
		if s.Label != -1 || filepath.Base(s.Path) != wantOrder[i] {
			t.Errorf("sample %d: %s label %d, want %s label -1", i, s.Path, s.Label, wantOrder[i])
		}
	}
}

func TestFolderEmpty(t *testing.T) {
	if _, err := Open(t.TempDir(), OpenOptions{}); err == nil {
		t.Fatal("empty folder: no error")
	}
}

func TestDecodePNGExact(t *testing.T) {
	root := t.TempDir()
	gray := grayImage(3, 2, func(x, y int) uint8 { return uint8(10*x + 100*y) })
	rgb := rgbImage(2, 2, func(x, y int) (uint8, uint8, uint8) { return uint8(x * 255), uint8(y * 7), 33 })
	nrgba := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	nrgba.SetNRGBA(0, 0, color.NRGBA{R: 200, G: 100, B: 50, A: 10})
	gray16 := image.NewGray16(image.Rect(0, 0, 1, 1))
	gray16.SetGray16(0, 0, color.Gray16{Y: 1000})
	pal := image.NewPaletted(image.Rect(0, 0, 2, 1), color.Palette{color.RGBA{1, 2, 3, 255}, color.RGBA{250, 128, 0, 255}})
	pal.SetColorIndex(1, 0, 1)
	tests := []struct {
		name string
		img  image.Image
		c    int
		want []float32
	}{
		{"gray", gray, 1, []float32{0, 10. / 255, 20. / 255, 100. / 255, 110. / 255, 120. / 255}},
		{"rgb", rgb, 3, []float32{0, 1, 0, 1, 0, 0, 7. / 255, 7. / 255, 33. / 255, 33. / 255, 33. / 255, 33. / 255}},
		{"nrgba drops alpha", nrgba, 3, []float32{200. / 255, 100. / 255, 50. / 255}},
		{"gray16", gray16, 1, []float32{1000. / 65535}},
		{"paletted", pal, 3, []float32{1. / 255, 250. / 255, 2. / 255, 128. / 255, 3. / 255, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(root, tc.name+".png")
			writePNG(t, p, tc.img)
			var s Sample
			if err := decodeImageFile(p, &s); err != nil {
				t.Fatal(err)
			}
			b := tc.img.Bounds()
			if s.Channels != tc.c || s.Width != b.Dx() || s.Height != b.Dy() {
				t.Fatalf("shape %dx%dx%d, want %dx%dx%d", s.Channels, s.Height, s.Width, tc.c, b.Dy(), b.Dx())
			}
			if !reflect.DeepEqual(s.Pix, tc.want) {
				t.Errorf("pixels %v, want %v", s.Pix, tc.want)
			}
		})
	}
}

func TestDecodeJPEG(t *testing.T) {
	root := t.TempDir()
	// Flat colours survive JPEG up to rounding in the colour conversion.
	p := filepath.Join(root, "rgb.jpg")
	writeJPEG(t, p, rgbImage(16, 16, func(x, y int) (uint8, uint8, uint8) { return 200, 100, 50 }))
	s, err := (&Folder{files: []string{p}, labels: []int{4}}).Sample(0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Channels != 3 || s.Height != 16 || s.Width != 16 || s.Label != 4 {
		t.Fatalf("shape %dx%dx%d label %d", s.Channels, s.Height, s.Width, s.Label)
	}
	want := []float32{200. / 255, 100. / 255, 50. / 255}
	for c := 0; c < 3; c++ {
		for k := 0; k < 256; k++ {
			if v := s.Pix[c*256+k]; !approx(v, want[c], 3./255) {
				t.Fatalf("channel %d pixel %d = %v, want %v within 3/255", c, k, v*255, want[c]*255)
			}
		}
	}
	g := filepath.Join(root, "gray.jpg")
	writeJPEG(t, g, grayImage(8, 8, func(x, y int) uint8 { return 77 }))
	var gs Sample
	if err := decodeImageFile(g, &gs); err != nil {
		t.Fatal(err)
	}
	if gs.Channels != 1 {
		t.Fatalf("gray JPEG has %d channels, want 1", gs.Channels)
	}
	for k, v := range gs.Pix {
		if !approx(v, 77./255, 1./255) {
			t.Fatalf("gray pixel %d = %v, want 77", k, v*255)
		}
	}
}

func TestCorruptImageNamesFile(t *testing.T) {
	root := t.TempDir()
	for i := 0; i < 3; i++ {
		writePNG(t, filepath.Join(root, "0_a", string(rune('a'+i))+".png"), grayImage(2, 2, func(x, y int) uint8 { return 1 }))
	}
	bad := writeFile(t, filepath.Join(root, "0_a", "bb.png"), []byte("\x89PNG\r\n\x1a\nthis is not a png"))
	trunc := filepath.Join(root, "1_b", "t.png")
	writePNG(t, trunc, grayImage(20, 20, func(x, y int) uint8 { return uint8(x * y) }))
	data, _ := os.ReadFile(trunc)
	writeFile(t, trunc, data[:len(data)/2])
	src, err := Open(root, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < src.Len(); i++ {
		path := src.(*Folder).Path(i)
		_, err := src.Sample(i)
		if path == bad || path == trunc {
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Errorf("sample %s: err = %v, want an error naming the file", path, err)
			}
		} else if err != nil {
			t.Errorf("sample %s: %v", path, err)
		}
	}
	// The Loader reports it too, in every mode.
	for _, o := range []LoaderOptions{{BatchSize: 8}, {BatchSize: 8, Workers: 3}, {BatchSize: 8, Prefetch: 2}} {
		l, err := NewLoader(src, nil, Preprocess{Channels: 1, Height: 2, Width: 2}, o)
		if err != nil {
			t.Fatal(err)
		}
		_, err = l.Next(make([]float32, l.BatchLen()), make([]int, 8))
		if err == nil || !strings.Contains(err.Error(), "bb.png") {
			t.Errorf("loader %+v: err = %v, want one naming bb.png", o, err)
		}
		l.Close()
	}
}

func TestHugeImageHeaderRefused(t *testing.T) {
	// A valid PNG whose IHDR claims 100000x100000 pixels.
	var buf bytes.Buffer
	if err := png.Encode(&buf, grayImage(1, 1, func(int, int) uint8 { return 0 })); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	// Signature (8), chunk length (4), "IHDR" (4), width and height.
	binary.BigEndian.PutUint32(b[16:], 100000)
	binary.BigEndian.PutUint32(b[20:], 100000)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	p := writeFile(t, filepath.Join(t.TempDir(), "huge.png"), b)
	var s Sample
	err := decodeImageFile(p, &s)
	if err == nil || !strings.Contains(err.Error(), "too large") || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v, want a size error naming the file", err)
	}
}

func TestFolderFollowsLinkedClassFolders(t *testing.T) {
	real := t.TempDir()
	writePNG(t, filepath.Join(real, "x.png"), grayImage(1, 1, func(int, int) uint8 { return 5 }))
	root := t.TempDir()
	writePNG(t, filepath.Join(root, "0_a", "y.png"), grayImage(1, 1, func(int, int) uint8 { return 6 }))
	if err := os.Symlink(real, filepath.Join(root, "1_b")); err != nil {
		testutil.Skipf(t, "symlinks not supported: %v", err)
	}
	src, err := Open(root, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if src.Len() != 2 {
		t.Fatalf("Len = %d, want 2 (one image in a linked folder)", src.Len())
	}
	s, err := src.Sample(1)
	if err != nil || s.Label != 1 || s.Path != filepath.Join(root, "1_b", "x.png") || s.Pix[0] != 5./255 {
		t.Fatalf("sample 1 = %+v, %v", s, err)
	}
}
