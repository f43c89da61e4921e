package dataset

import (
	"errors"
	"fmt"
	"io"
)

// ReadAll preprocesses every sample of src, in order, into one NCHW batch
// and returns it with the labels. It suits small evaluation sets that fit
// in memory; use a Loader to stream larger ones.
func ReadAll(src Source, pre Preprocess) (x []float32, labels []int, err error) {
	n := src.Len()
	if n == 0 {
		return nil, nil, errors.New("read all samples: the source is empty")
	}
	l, err := NewLoader(src, Indices(n), pre, LoaderOptions{BatchSize: n})
	if err != nil {
		return nil, nil, fmt.Errorf("read all samples: %w", err)
	}
	defer l.Close()
	x = make([]float32, l.BatchLen())
	labels = make([]int, n)
	got, err := l.Next(x, labels)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("read all samples: %w", err)
	}
	return x[:got*pre.Size()], labels[:got], nil
}
