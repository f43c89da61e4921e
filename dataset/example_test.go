package dataset_test

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/lprconv/lprconv/dataset"
)

// Example reads a folder of class sub-folders and yields normalised NCHW
// batches for a model with input shape 3x8x8.
func Example() {
	root, err := os.MkdirTemp("", "dataset-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	for i, class := range []string{"0_circle", "1_square", "2_star"} {
		for j := 0; j < 3; j++ {
			img := image.NewGray(image.Rect(0, 0, 4, 4))
			img.SetGray(0, 0, color.Gray{Y: uint8(40*i + j)})
			if err := os.MkdirAll(filepath.Join(root, class), 0o755); err != nil {
				log.Fatal(err)
			}
			f, err := os.Create(filepath.Join(root, class, fmt.Sprintf("%d.png", j)))
			if err != nil {
				log.Fatal(err)
			}
			if err := png.Encode(f, img); err != nil {
				log.Fatal(err)
			}
			f.Close()
		}
	}

	src, err := dataset.Open(root, dataset.OpenOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	train, val, err := dataset.SplitFraction(dataset.Indices(src.Len()), 1.0/3, 1)
	if err != nil {
		log.Fatal(err)
	}
	mean, std, _ := dataset.Preset(dataset.PresetImageNet)
	pre := dataset.Preprocess{Channels: 3, Height: 8, Width: 8, Mean: mean, Std: std}
	loader, err := dataset.NewLoader(src, train, pre, dataset.LoaderOptions{BatchSize: 4, Shuffle: true, Seed: 42})
	if err != nil {
		log.Fatal(err)
	}
	defer loader.Close()

	batch := make([]float32, loader.BatchLen())
	labels := make([]int, 4)
	fmt.Println("classes:", src.Classes(), "train:", len(train), "validation:", len(val))
	for {
		n, err := loader.Next(batch, labels)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("batch of", n, "values", n*pre.Size())
	}
	// Output:
	// classes: [circle square star] train: 6 validation: 3
	// batch of 4 values 768
	// batch of 2 values 384
}
