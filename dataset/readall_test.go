package dataset

import (
	"strings"
	"testing"
)

func TestReadAll(t *testing.T) {
	const n = 7
	src := openIndexNPY(t, n)
	x, labels, err := ReadAll(src, Preprocess{Channels: 1, Height: 2, Width: 3, Mean: []float32{1}, Std: []float32{2}})
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != n*6 || len(labels) != n {
		t.Fatalf("got %d values and %d labels, want %d and %d", len(x), len(labels), n*6, n)
	}
	for i := 0; i < n; i++ {
		if labels[i] != 100+i {
			t.Errorf("label %d = %d, want %d", i, labels[i], 100+i)
		}
		want := (float32(i) - 1) / 2
		for _, v := range x[i*6 : (i+1)*6] {
			if v != want {
				t.Fatalf("sample %d holds %v, want %v", i, v, want)
			}
		}
	}
}

func TestReadAllErrors(t *testing.T) {
	src := openIndexNPY(t, 3)
	if _, _, err := ReadAll(src, Preprocess{}); err == nil || !strings.Contains(err.Error(), "read all samples") {
		t.Errorf("invalid preprocessing: err = %v", err)
	}
}
