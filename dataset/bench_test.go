package dataset

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
)

// benchFolder writes n images of one kind into class folders under a temp dir.
func benchFolder(b *testing.B, n int, jpegRGB bool, size int) string {
	b.Helper()
	root := b.TempDir()
	for i := 0; i < n; i++ {
		p := filepath.Join(root, fmt.Sprintf("%d_c%d", i%10, i%10), fmt.Sprintf("%04d", i))
		if jpegRGB {
			writeJPEG(b, p+".jpg", rgbImage(size, size, func(x, y int) (uint8, uint8, uint8) {
				return uint8(x*7 + i), uint8(y * 5), uint8(x ^ y)
			}))
		} else {
			writePNG(b, p+".png", grayImage(size, size, func(x, y int) uint8 { return uint8(x*y + i) }))
		}
	}
	return root
}

// BenchmarkLoaderBatch64 measures reading and preprocessing one batch of 64
// samples from each kind of source.
func BenchmarkLoaderBatch64(b *testing.B) {
	mean, std, _ := Preset(PresetImageNet)
	cases := []struct {
		name    string
		open    func(b *testing.B) Source
		pre     Preprocess
		workers int
	}{
		{"png-gray32-to-1x32x32", func(b *testing.B) Source {
			return mustOpen(b, benchFolder(b, 256, false, 32))
		}, Preprocess{Channels: 1, Height: 32, Width: 32, Mean: []float32{0.5}, Std: []float32{0.5}}, 1},
		{"png-gray32-to-3x32x32-workers2", func(b *testing.B) Source {
			return mustOpen(b, benchFolder(b, 256, false, 32))
		}, Preprocess{Channels: 3, Height: 32, Width: 32, Mean: mean, Std: std}, 2},
		{"jpeg-rgb96-to-3x224x224-imagenet", func(b *testing.B) Source {
			return mustOpen(b, benchFolder(b, 128, true, 96))
		}, Preprocess{Channels: 3, Height: 224, Width: 224, Mean: mean, Std: std}, 1},
		{"idx-gz-28-to-1x28x28", func(b *testing.B) Source {
			dir := b.TempDir()
			n := 4096
			data := make([]byte, n*784)
			for i := range data {
				data[i] = byte(i * 31)
			}
			writeFile(b, filepath.Join(dir, "train-images-idx3-ubyte.gz"), gzipBytes(b, idxBytes([]int{n, 28, 28}, data)))
			writeFile(b, filepath.Join(dir, "train-labels-idx1-ubyte.gz"), gzipBytes(b, idxBytes([]int{n}, make([]byte, n))))
			return mustOpen(b, dir)
		}, Preprocess{Channels: 1, Height: 28, Width: 28, Mean: []float32{0.286}, Std: []float32{0.353}}, 1},
		{"npy-f32-3x32x32-to-3x64x64", func(b *testing.B) Source {
			x, y := indexNPY(b, b.TempDir(), 1024, 3, 32, 32)
			src, err := OpenNPY(x, y)
			if err != nil {
				b.Fatal(err)
			}
			return src
		}, Preprocess{Channels: 3, Height: 64, Width: 64}, 1},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			src := tc.open(b)
			defer src.Close()
			l, err := NewLoader(src, nil, tc.pre, LoaderOptions{BatchSize: 64, Shuffle: true, Reshuffle: true, Workers: tc.workers})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			dst := make([]float32, l.BatchLen())
			labels := make([]int, 64)
			b.ReportAllocs()
			b.ResetTimer()
			samples := 0
			for b.Loop() {
				n, err := l.Next(dst, labels)
				if errors.Is(err, io.EOF) {
					n, err = l.Next(dst, labels)
				}
				if err != nil {
					b.Fatal(err)
				}
				samples += n
			}
			b.ReportMetric(float64(samples)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

func mustOpen(b *testing.B, path string) Source {
	b.Helper()
	src, err := Open(path, OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return src
}
