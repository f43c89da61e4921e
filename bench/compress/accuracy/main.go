// Command accuracy measures the top-1 accuracy of LPR-compressed fixture
// models before any fine-tuning: for every model, residual kind and rank
// ratio it compresses the model data-free (package convert) and evaluates
// original and compressed on the committed test images in ONNX Runtime.
//
//	go run ./bench/compress/accuracy [-models 'testdata/models/*.onnx'] [-images testdata/images/test]
//	    [-ratios 0.5,0.25,0.125] [-residuals none,identity,diag,dw3] [-multiple 0]
//
// Images are read with package dataset: 32x32 gray PNGs replicated to 3
// channels and normalized with mean 0.2860 and std 0.3530, as recorded in
// testdata/models/fixtures.json. "agree" is the fraction of images on
// which the compressed model predicts the original's class.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/svd"
)

func main() {
	models := flag.String("models", "testdata/models/*.onnx", "glob of models")
	images := flag.String("images", "testdata/images/test", "folder of class sub-folders of test images")
	ratios := flag.String("ratios", "0.5,0.25,0.125", "rank ratios")
	residuals := flag.String("residuals", "none,identity,diag,dw3", "residual kinds")
	multiple := flag.Int("multiple", 0, "round ranks up to a multiple of this")
	align := flag.Int("channel-align", 0, "keep layers whose channel count is not a multiple of this (lprconv compress defaults to 4)")
	force := flag.Bool("force", false, "replace layers even where the module is not smaller (ratio 1/2 is at the break-even point)")
	flag.Parse()
	if err := run(*models, *images, *ratios, *residuals, *multiple, *align, *force); err != nil {
		fmt.Fprintln(os.Stderr, "accuracy:", err)
		os.Exit(1)
	}
}

// loadImages returns every image of the folder as one NCHW batch and the
// labels.
func loadImages(root string) ([]float32, []int, error) {
	src, err := dataset.Open(root, dataset.OpenOptions{})
	if err != nil {
		return nil, nil, err
	}
	defer src.Close()
	pre := dataset.Preprocess{Channels: 3, Height: 32, Width: 32, Mean: []float32{0.2860}, Std: []float32{0.3530}}
	x, labels, err := dataset.ReadAll(src, pre)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", root, err)
	}
	return x, labels, nil
}

// predict runs the model on all images and returns the argmax per image.
func predict(path, input string, x []float32) ([]int, error) {
	s, err := ortrun.NewSession(path, ortrun.Options{IntraOpThreads: 2})
	if err != nil {
		return nil, fmt.Errorf("open %s in ONNX Runtime: %w", path, err)
	}
	defer s.Close()
	batch := 100
	if d := s.Inputs()[0].Shape[0]; d > 0 {
		batch = int(d) // the model fixes its batch size (opset 9 exports)
	}
	per := 3 * 32 * 32
	n := len(x) / per
	var preds []int
	for i := 0; i < n; i += batch {
		b := min(batch, n-i)
		out, err := s.Run(map[string]ortrun.Tensor{input: {Shape: []int64{int64(b), 3, 32, 32}, Data: x[i*per : (i+b)*per]}}, nil)
		if err != nil {
			return nil, fmt.Errorf("run %s on images %d-%d: %w", path, i, i+b-1, err)
		}
		for _, t := range out {
			k := len(t.Data) / b
			for j := 0; j < b; j++ {
				preds = append(preds, evaluate.ArgMax(t.Data[j*k:(j+1)*k]))
			}
		}
	}
	return preds, nil
}

func run(glob, images, ratioList, residualList string, multiple, align int, force bool) error {
	paths, err := filepath.Glob(glob)
	if err != nil || len(paths) == 0 {
		return fmt.Errorf("no models match %q", glob)
	}
	var ratios []float64
	for _, f := range strings.Split(ratioList, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return fmt.Errorf("-ratios: %w", err)
		}
		ratios = append(ratios, r)
	}
	var kinds []svd.ResidualKind
	for _, f := range strings.Split(residualList, ",") {
		k, err := svd.ParseResidual(f)
		if err != nil {
			return fmt.Errorf("-residuals: %w", err)
		}
		kinds = append(kinds, k)
	}
	x, labels, err := loadImages(images)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "lprconv-accuracy")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	top1 := func(p []int) float64 {
		ok := 0
		for i, c := range p {
			if c == labels[i] {
				ok++
			}
		}
		return float64(ok) / float64(len(labels))
	}
	fmt.Printf("%d test images from %s, multiple %d, force %v\n\n", len(labels), images, multiple, force)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\tresidual\tratio\treplaced\tmean rel.err\tparams\tMACs\ttop-1 orig\ttop-1 LPR\tagree\t")
	for _, path := range paths {
		m, err := onnxio.Load(path)
		if err != nil {
			return err
		}
		input := m.Graph.Input[0].Name
		ref, err := predict(path, input, x)
		if err != nil {
			return err
		}
		for _, kind := range kinds {
			for _, r := range ratios {
				p, err := convert.NewPlan(context.Background(), m, svd.Policy{Ratio: r, Multiple: multiple}, kind, convert.PlanOptions{ChannelAlign: align, Select: convert.Selection{Force: force}})
				if err != nil {
					return fmt.Errorf("plan %s (%s, ratio %g): %w", path, kind, r, err)
				}
				out, err := convert.Apply(m, p)
				if err != nil {
					return fmt.Errorf("compress %s (%s, ratio %g): %w", path, kind, r, err)
				}
				cpath := filepath.Join(tmp, "c.onnx")
				if err := onnxio.Save(cpath, out, onnxio.SaveOptions{}); err != nil {
					return err
				}
				got, err := predict(cpath, input, x)
				if err != nil {
					return err
				}
				agree := 0
				for i := range got {
					if got[i] == ref[i] {
						agree++
					}
				}
				var errSum float64
				for _, l := range p.Layers {
					if l.Replace {
						errSum += l.RelErr
					}
				}
				meanErr := 0.0
				if p.Replaced() > 0 {
					meanErr = errSum / float64(p.Replaced())
				}
				fmt.Fprintf(tw, "%s\t%s\t%g\t%d/%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", filepath.Base(path), kind, r, p.Replaced(), len(p.Layers), meanErr,
					float64(p.ParamsAfter)/float64(p.ParamsBefore), float64(p.MACsAfter)/float64(p.MACsBefore), top1(ref), top1(got), float64(agree)/float64(len(ref)))
				tw.Flush()
			}
		}
	}
	return tw.Flush()
}
