package main

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/internal/testutil"
)

func TestMedianAndPairedRatio(t *testing.T) {
	for _, c := range []struct {
		name     string
		a, b     []float64
		medA, pr float64
	}{
		{"odd", []float64{3, 1, 2}, []float64{1, 1, 1}, 2, 2},
		{"even", []float64{4, 1, 3, 2}, []float64{2, 2, 2, 2}, 2.5, 1.25},
		// a slow phase that hits both runners alike cancels in the pairs
		{"drift", []float64{10, 5, 10, 2}, []float64{20, 10, 20, 4}, 7.5, 0.5},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := median(c.a); got != c.medA {
				t.Errorf("median(%v) = %g, want %g", c.a, got, c.medA)
			}
			if got := pairedRatio(c.a, c.b); math.Abs(got-c.pr) > 1e-12 {
				t.Errorf("pairedRatio(%v, %v) = %g, want %g", c.a, c.b, got, c.pr)
			}
		})
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing must be NaN")
	}
}

// The NPY file that run.sh hands to `lprconv eval --data` must read back
// through the dataset package with the shape asked for and values in [0,1).
func TestNPYReadsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.npy")
	if err := npyMain([]string{"-o", path, "-n", "3", "-shape", "3,5,7"}); err != nil {
		t.Fatal(err)
	}
	d, err := dataset.OpenNPY(path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Len() != 3 {
		t.Fatalf("%d samples, want 3", d.Len())
	}
	distinct := map[float32]bool{}
	for i := 0; i < 3; i++ {
		s, err := d.Sample(i)
		if err != nil {
			t.Fatal(err)
		}
		if s.Channels != 3 || s.Height != 5 || s.Width != 7 || len(s.Pix) != 105 {
			t.Fatalf("sample %d: %dx%dx%d with %d values, want 3x5x7", i, s.Channels, s.Height, s.Width, len(s.Pix))
		}
		for _, v := range s.Pix {
			if v < 0 || v >= 1 {
				t.Fatalf("sample %d: value %g outside [0,1)", i, v)
			}
			distinct[v] = true
		}
	}
	if len(distinct) < 300 {
		t.Errorf("only %d distinct values in 315: not random", len(distinct))
	}
}

// The engine's training step must lower the loss on a fixed batch, and its
// parameters must change: the benchmark times real training.
func TestTrainerLowersLoss(t *testing.T) {
	path := filepath.Join("..", "..", "testdata", "models", "mobilenetv1.onnx")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		testutil.Skipf(t, "fixture missing: %v", err)
	}
	tr, err := newTrainer(path, 8, 1, 0.01)
	if err != nil {
		t.Fatal(err) // the fixture is there: any error is a failure
	}
	defer tr.p.Close()
	if len(tr.params) < 50 {
		t.Fatalf("%d trainable tensors; want every float initializer", len(tr.params))
	}
	w0 := append([]float32(nil), tr.p.Param(tr.params[0]).F...)
	if err := tr.step(); err != nil {
		t.Fatal(err)
	}
	first := tr.loss
	for i := 0; i < 20; i++ {
		if err := tr.step(); err != nil {
			t.Fatal(err)
		}
	}
	if !(tr.loss < 0.5*first) {
		t.Errorf("loss %g after 21 SGD steps on one batch, first %g: want it at least halved", tr.loss, first)
	}
	changed := false
	for i, v := range tr.p.Param(tr.params[0]).F {
		changed = changed || v != w0[i]
	}
	if !changed {
		t.Errorf("parameter %q did not change", tr.params[0])
	}
}
