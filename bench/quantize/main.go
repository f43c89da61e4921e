// Command quantize measures lprconv's fp16 and int8 exports: file size,
// top-1 in ONNX Runtime on the 500 committed test images, and ONNX Runtime
// latency (1 intra-op thread, every graph optimization) at batch 1 and 64,
// for each fixture and its LPR-compressed form (data-free, lprconv
// compress's defaults). Run from the repository root:
//
//	ONNXRUNTIME_LIB=... go run ./bench/quantize [-runs 200] [-out DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/quantize"
	"github.com/lprconv/lprconv/svd"
)

var pre = dataset.Preprocess{Channels: 3, Height: 32, Width: 32, Mean: []float32{0.286}, Std: []float32{0.353}}

func main() {
	runs := flag.Int("runs", 200, "timed runs at batch 1 (batch 64: runs/10)")
	out := flag.String("out", "", "folder for the models (default: a temporary one)")
	method := flag.String("method", "minmax", "calibration method")
	flag.Parse()
	if err := run(*runs, *out, *method); err != nil {
		log.Fatal(err)
	}
}

func run(runs int, dir, method string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "lprconv-bench-quantize-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	meth, err := quantize.ParseMethod(method)
	if err != nil {
		return err
	}
	src, err := dataset.Open("testdata/images/test", dataset.OpenOptions{})
	if err != nil {
		return err
	}
	x, labels, err := dataset.ReadAll(src, pre)
	src.Close()
	if err != nil {
		return err
	}
	fmt.Println("| model | precision | file bytes | x fp32 original | top-1 (500) | agreement with fp32 | batch 1 ms | batch 64 ms | b64 x fp32 original |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, name := range []string{"mobilenetv1", "shufflenetv2"} {
		m, err := onnxio.Load(filepath.Join("testdata/models", name+".onnx"))
		if err != nil {
			return err
		}
		lpr, err := compress(m)
		if err != nil {
			return err
		}
		var origBytes int64
		var origB64 float64
		var ref []int
		for _, v := range []struct {
			tag   string
			model *onnxpb.ModelProto
		}{{name, m}, {name + " LPR", lpr}} {
			h, _, err := quantize.ToFloat16(v.model, quantize.FP16Options{})
			if err != nil {
				return err
			}
			train, err := dataset.Open("testdata/images/train", dataset.OpenOptions{})
			if err != nil {
				return err
			}
			l, err := dataset.NewLoader(train, dataset.Random(dataset.Indices(train.Len()), train.Len(), 1), pre, dataset.LoaderOptions{BatchSize: 32})
			if err != nil {
				return err
			}
			q, _, err := quantize.Int8(context.Background(), v.model, l, quantize.Int8Options{Calibrate: quantize.CalibrateOptions{Method: meth, Samples: 1000}})
			l.Close()
			train.Close()
			if err != nil {
				return err
			}
			for _, p := range []struct {
				prec  string
				model *onnxpb.ModelProto
			}{{"fp32", v.model}, {"fp16", h}, {"int8", q}} {
				path := filepath.Join(dir, fmt.Sprintf("%s_%t_%s.onnx", name, v.model == lpr, p.prec))
				if err := onnxio.Save(path, p.model, onnxio.SaveOptions{}); err != nil {
					return err
				}
				st, err := os.Stat(path)
				if err != nil {
					return err
				}
				s, err := ortrun.NewSession(path, ortrun.Options{})
				if err != nil {
					return err
				}
				top, err := classify(s, x)
				if err != nil {
					return err
				}
				b1, err := latency(s, x, 1, runs)
				if err != nil {
					return err
				}
				b64, err := latency(s, x, 64, max(runs/10, 5))
				if err != nil {
					return err
				}
				s.Close()
				if origBytes == 0 {
					origBytes, origB64, ref = st.Size(), b64, top
				}
				fmt.Printf("| %s | %s | %d | %.3f | %.1f | %.1f | %.3f | %.2f | %.2f |\n", v.tag, p.prec, st.Size(), float64(st.Size())/float64(origBytes),
					100*agree(top, labels), 100*agree(top, ref), b1, b64, b64/origB64)
			}
		}
	}
	return nil
}

func compress(m *onnxpb.ModelProto) (*onnxpb.ModelProto, error) {
	res, err := svd.ParseResidual("diag")
	if err != nil {
		return nil, err
	}
	plan, err := convert.NewPlan(context.Background(), m, svd.Policy{Ratio: 0.25, Multiple: 16}, res,
		convert.PlanOptions{SVD: svd.Options{Seed: 1}, ChannelAlign: 4})
	if err != nil {
		return nil, err
	}
	return convert.Apply(m, plan)
}

const per = 3 * 32 * 32

func classify(s *ortrun.Session, x []float32) ([]int, error) {
	var top []int
	for i := 0; i < len(x); i += 100 * per {
		j := min(len(x), i+100*per)
		r, err := s.Run(map[string]ortrun.Tensor{"input": {Shape: []int64{int64((j - i) / per), 3, 32, 32}, Data: x[i:j]}}, nil)
		if err != nil {
			return nil, err
		}
		d := r["logits"].Data
		for k := 0; k < len(d); k += 10 {
			top = append(top, evaluate.ArgMax(d[k:k+10]))
		}
	}
	return top, nil
}

// latency returns the median wall time in milliseconds of runs runs at
// the given batch size, after 5 warm-up runs.
func latency(s *ortrun.Session, x []float32, batch, runs int) (float64, error) {
	in := map[string]ortrun.Tensor{"input": {Shape: []int64{int64(batch), 3, 32, 32}, Data: x[:batch*per]}}
	ts := make([]float64, 0, runs)
	for i := 0; i < runs+5; i++ {
		t0 := time.Now()
		if _, err := s.Run(in, nil); err != nil {
			return 0, err
		}
		if i >= 5 {
			ts = append(ts, float64(time.Since(t0).Microseconds())/1000)
		}
	}
	sort.Float64s(ts)
	return ts[len(ts)/2], nil
}

func agree(a, b []int) float64 {
	n := 0
	for i := range a {
		if a[i] == b[i] {
			n++
		}
	}
	return float64(n) / float64(len(a))
}
