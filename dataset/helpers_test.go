package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// writePNG writes img as a PNG file at path, creating folders.
func writePNG(t testing.TB, path string, img image.Image) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeJPEG writes img as a JPEG file at path with quality 100.
func writeJPEG(t testing.TB, path string, img image.Image) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// grayImage builds a w x h gray image with pixel (x,y) = f(x,y).
func grayImage(w, h int, f func(x, y int) uint8) *image.Gray {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetGray(x, y, color.Gray{Y: f(x, y)})
		}
	}
	return img
}

// rgbImage builds an opaque w x h image with pixel (x,y) = f(x,y).
func rgbImage(w, h int, f func(x, y int) (r, g, b uint8)) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, g, b := f(x, y)
			img.SetRGBA(x, y, color.RGBA{R: r, G: g, B: b, A: 255})
		}
	}
	return img
}

// idxBytes encodes an IDX file of unsigned bytes.
func idxBytes(dims []int, data []byte) []byte {
	var buf bytes.Buffer
	buf.Write([]byte{0, 0, 0x08, byte(len(dims))})
	for _, d := range dims {
		binary.Write(&buf, binary.BigEndian, uint32(d))
	}
	buf.Write(data)
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// npyBytes encodes an NPY version 1.0 file with the given descr and shape.
func npyBytes(descr string, shape []int, data []byte) []byte {
	sh := "("
	for _, d := range shape {
		sh += fmt.Sprintf("%d, ", d)
	}
	if len(shape) > 1 {
		sh = sh[:len(sh)-2]
	}
	sh += ")"
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, sh)
	total := 10 + len(dict) + 1
	pad := (64 - total%64) % 64
	dict += string(bytes.Repeat([]byte{' '}, pad)) + "\n"
	var buf bytes.Buffer
	buf.WriteString(npyMagic)
	buf.Write([]byte{1, 0})
	binary.Write(&buf, binary.LittleEndian, uint16(len(dict)))
	buf.WriteString(dict)
	buf.Write(data)
	return buf.Bytes()
}

func float32Bytes(v []float32) []byte {
	out := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(f))
	}
	return out
}

func int64Bytes(v []int64) []byte {
	out := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(out[8*i:], uint64(x))
	}
	return out
}

func int32Bytes(v []int32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], uint32(x))
	}
	return out
}

func writeFile(t testing.TB, path string, b []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// indexNPY writes an NPY float32 file of n images of shape (c,h,w) whose
// every value equals the sample index, with int64 labels 100+index.
func indexNPY(t testing.TB, dir string, n, c, h, w int) (images, labels string) {
	t.Helper()
	vals := make([]float32, n*c*h*w)
	labs := make([]int64, n)
	for i := 0; i < n; i++ {
		for k := 0; k < c*h*w; k++ {
			vals[i*c*h*w+k] = float32(i)
		}
		labs[i] = int64(100 + i)
	}
	images = writeFile(t, filepath.Join(dir, "x.npy"), npyBytes("<f4", []int{n, c, h, w}, float32Bytes(vals)))
	labels = writeFile(t, filepath.Join(dir, "y.npy"), npyBytes("<i8", []int{n}, int64Bytes(labs)))
	return images, labels
}

func approx(a, b, tol float32) bool { return float32(math.Abs(float64(a-b))) <= tol }

// writeNPYPair writes data to dir/x.npy and, unless labels is nil, labels
// to dir/labelName; it returns both paths ("" for no labels).
func writeNPYPair(t testing.TB, dir string, data, labels []byte, labelName string) (npy, labelPath string) {
	t.Helper()
	npy = writeFile(t, filepath.Join(dir, "x.npy"), data)
	if labels != nil {
		labelPath = writeFile(t, filepath.Join(dir, labelName), labels)
	}
	return npy, labelPath
}
