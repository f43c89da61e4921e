package engine

import (
	"encoding/json"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
	"github.com/lprconv/lprconv/onnxio"
)

// fixtureIndex is the part of testdata/models/fixtures.json this test reads.
type fixtureIndex struct {
	Models map[string]struct {
		Input           string    `json:"input"`
		Output          string    `json:"output"`
		Mean            []float32 `json:"mean"`
		Std             []float32 `json:"std"`
		ReferenceLogits []struct {
			Image  string    `json:"image"`
			Logits []float32 `json:"logits"`
		} `json:"reference_logits"`
	} `json:"models"`
}

// TestFixtureReferenceLogits runs every fixture model on the test images
// for which PyTorch recorded logits when it exported the model, and checks
// that the engine reproduces them.
func TestFixtureReferenceLogits(t *testing.T) {
	root := testutil.RepoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "testdata", "models", "fixtures.json"))
	if err != nil {
		testutil.Skipf(t, "no fixture index: %v", err)
	}
	var idx fixtureIndex
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for name, fx := range idx.Models {
		if len(fx.ReferenceLogits) == 0 {
			continue
		}
		t.Run(name, func(t *testing.T) {
			m, err := onnxio.Load(filepath.Join(root, "testdata", "models", name))
			if err != nil {
				t.Fatal(err)
			}
			n := len(fx.ReferenceLogits)
			x := NewTensor(n, 3, 32, 32)
			for i, ref := range fx.ReferenceLogits {
				f, err := os.Open(filepath.Join(root, "testdata", ref.Image))
				if err != nil {
					t.Fatal(err)
				}
				img, err := png.Decode(f)
				f.Close()
				if err != nil {
					t.Fatalf("%s: %v", ref.Image, err)
				}
				gray, ok := img.(*image.Gray)
				if !ok || gray.Rect.Dx() != 32 || gray.Rect.Dy() != 32 {
					t.Fatalf("%s: want a 32x32 gray image", ref.Image)
				}
				for c := 0; c < 3; c++ {
					for p := 0; p < 32*32; p++ {
						v := float32(gray.Pix[(p/32)*gray.Stride+p%32]) / 255
						x.F[(i*3+c)*1024+p] = (v - fx.Mean[c]) / fx.Std[c]
					}
				}
			}
			// run the images as one batch, or one at a time when the model's
			// batch dimension is fixed
			per := n
			if d := m.Graph.Input[0].GetType().GetTensorType().GetShape().GetDim(); len(d) > 0 && d[0].GetDimValue() > 0 {
				per = int(d[0].GetDimValue())
			}
			if n%per != 0 {
				t.Fatalf("%d reference images do not split into batches of %d", n, per)
			}
			p, err := Compile(m, Options{InputShapes: map[string][]int{fx.Input: {per, 3, 32, 32}}})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			got := NewTensor(n, len(fx.ReferenceLogits[0].Logits))
			for i0 := 0; i0 < n; i0 += per {
				xb := NewTensorF(x.F[i0*3*1024:(i0+per)*3*1024], per, 3, 32, 32)
				out, err := p.Run(map[string]*Tensor{fx.Input: xb})
				if err != nil {
					t.Fatal(err)
				}
				copy(got.F[i0*len(fx.ReferenceLogits[0].Logits):], out[fx.Output].F)
			}
			for i, ref := range fx.ReferenceLogits {
				var worst, scale float64
				for j, want := range ref.Logits {
					worst = max(worst, math.Abs(float64(got.F[i*len(ref.Logits)+j]-want)))
					scale = max(scale, math.Abs(float64(want)))
				}
				// the reference is printed with 6 decimals
				if worst > 1e-4*scale+2e-6 {
					t.Errorf("%s: max|engine-PyTorch| %.3g (max|logit| %.3g)", ref.Image, worst, scale)
				}
			}
			checked++
		})
	}
	if checked == 0 && testutil.InCI() {
		t.Fatal("no fixture has reference logits")
	}
}
