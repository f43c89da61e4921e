// Command orteval measures the top-1 accuracy of ONNX models in ONNX Runtime
// on the Fashion-MNIST test set: 28x28 IDX images zero-padded to 32x32,
// replicated to 3 channels and normalized with mean 0.286 and std 0.353
// (the fixtures' preprocessing, as lprconv eval --fit pad applies it).
//
//	go run ./bench/finetune/orteval [-data DIR] [-split test] [-threads 2] MODEL...
//
// It prints one line per model: top-1 in percent, then the path.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/onnxio"
)

func main() {
	data := flag.String("data", "/usr/share/datasets/fashion-mnist", "IDX folder (or image folder) of test images")
	split := flag.String("split", "test", "split of an IDX folder: train or test")
	threads := flag.Int("threads", 2, "ONNX Runtime intra-op threads")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: orteval [-data DIR] [-split test] MODEL...")
		os.Exit(2)
	}
	x, labels, err := loadImages(*data, *split)
	if err != nil {
		fmt.Fprintln(os.Stderr, "orteval:", err)
		os.Exit(1)
	}
	for _, path := range flag.Args() {
		acc, err := top1(path, x, labels, *threads)
		if err != nil {
			fmt.Fprintf(os.Stderr, "orteval: %s: %v\n", path, err)
			os.Exit(1)
		}
		fmt.Printf("%.2f\t%s\n", 100*acc, path)
	}
}

// loadImages returns every image as one NCHW float32 slice and the labels.
func loadImages(path, split string) ([]float32, []int, error) {
	src, err := dataset.Open(path, dataset.OpenOptions{Split: split})
	if err != nil {
		return nil, nil, err
	}
	defer src.Close()
	pre := dataset.Preprocess{Channels: 3, Height: 32, Width: 32, Fit: dataset.FitPad, Mean: []float32{0.286}, Std: []float32{0.353}}
	x, labels, err := dataset.ReadAll(src, pre)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return x, labels, nil
}

// top1 runs the model in ONNX Runtime on all images and returns the
// fraction whose argmax is the label.
func top1(path string, x []float32, labels []int, threads int) (float64, error) {
	m, err := onnxio.Load(path)
	if err != nil {
		return 0, err
	}
	input := m.Graph.Input[0].Name
	s, err := ortrun.NewSession(path, ortrun.Options{IntraOpThreads: threads})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	const batch = 100
	per := 3 * 32 * 32
	n := len(labels)
	var acc evaluate.Accuracy
	for i := 0; i < n; i += batch {
		b := min(batch, n-i)
		out, err := s.Run(map[string]ortrun.Tensor{input: {Shape: []int64{int64(b), 3, 32, 32}, Data: x[i*per : (i+b)*per]}}, nil)
		if err != nil {
			return 0, err
		}
		if len(out) != 1 {
			return 0, fmt.Errorf("%d outputs, want 1", len(out))
		}
		for _, t := range out {
			if err := acc.Add(t.Data, len(t.Data)/b, labels[i:i+b]); err != nil {
				return 0, err
			}
		}
	}
	return acc.Top1Rate(), nil
}
