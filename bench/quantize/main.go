// Command quantize measures the files bench/quantize/run.sh writes: for
// each fixture and its LPR-compressed form, in fp32, fp16 and int8, the
// file size, top-1 in ONNX Runtime on the 500 committed test images, its
// agreement with the fp32 file, and ONNX Runtime latency (1 intra-op
// thread, every graph optimization) at batch 1 and 64, and the top-1
// agreement of onnxruntime-web (WebAssembly, Node.js) with native ONNX
// Runtime on the same images. Latency is measured
// in interleaved rounds: each round times every file of one fixture in
// turn (runs runs each, process CPU time on Linux, which leaves out waiting
// for a core; wall time elsewhere or with -clock wall), and the table gives
// the median over rounds of the mean time, and the median of the per-round
// ratio to the fp32 original, which cancels most of the load of a shared
// machine.
//
//	ONNXRUNTIME_LIB=... go run ./bench/quantize [-dir bench/out/quantize] [-rounds 15] [-runs 20] [-int8 minmax]
//
// -models and -size measure other files of the same naming, e.g. the
// ImageNet-shaped models (-size 224; accuracy is then left out, since the
// committed images are Fashion-MNIST).
package main

import (
	"flag"
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/internal/ortrun"
	"github.com/lprconv/lprconv/internal/ortweb"
)

// now is the clock latency reads (cpuNow unless -clock wall).
var now = cpuNow

func main() {
	dir := flag.String("dir", "bench/out/quantize", "folder of <model>[_lpr]_{fp32,fp16,int8_METHOD}.onnx files")
	rounds := flag.Int("rounds", 15, "interleaved timing rounds")
	runs := flag.Int("runs", 20, "timed runs per file per round at batch 1 (batch 64: runs/4, at least 2)")
	int8 := flag.String("int8", "minmax", "calibration method of the int8 files")
	clock := flag.String("clock", "cpu", "cpu (process CPU time) or wall")
	models := flag.String("models", "mobilenetv1,shufflenetv2", "comma-separated model names")
	size := flag.Int("size", 32, "input height and width (accuracy only at 32)")
	flag.Parse()
	if _, ok := cpuNow(); !ok || *clock == "wall" {
		now = func() (time.Duration, bool) { return time.Duration(time.Now().UnixNano()), true }
	}
	if err := run(*dir, strings.Split(*models, ","), *size, *rounds, *runs, *int8); err != nil {
		log.Fatal(err)
	}
}

type file struct {
	tag, prec, path string
	bytes           int64
	sess            *ortrun.Session
	top, web        []int
	b1, b64         []float64 // per-round mean ms
}

func run(dir string, models []string, size, rounds, runs int, method string) error {
	src, err := dataset.Open("testdata/images/test", dataset.OpenOptions{})
	if err != nil {
		return err
	}
	x, labels, err := dataset.ReadAll(src, dataset.Preprocess{Channels: 3, Height: size, Width: size, Mean: []float32{0.286}, Std: []float32{0.353}})
	src.Close()
	if err != nil {
		return err
	}
	per := 3 * size * size
	if size != 32 {
		x = x[:64*per] // timing only
	}
	fmt.Println("| model | precision | file bytes | x fp32 original | top-1 500 (%) | agreement with its fp32 (%) | wasm agreement with native (%) | batch 1 ms | b1 x fp32 original | batch 64 ms | b64 x fp32 original |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, m := range models {
		var files []*file
		for _, v := range []string{m, m + "_lpr"} {
			for _, p := range []string{"fp32", "fp16", "int8_" + method} {
				path := filepath.Join(dir, v+"_"+p+".onnx")
				st, err := os.Stat(path)
				if err != nil {
					return fmt.Errorf("%w (run bench/quantize/run.sh first)", err)
				}
				s, err := ortrun.NewSession(path, ortrun.Options{})
				if err != nil {
					return err
				}
				defer s.Close()
				f := &file{tag: v, prec: p, path: path, bytes: st.Size(), sess: s}
				if size == 32 {
					if f.top, err = classify(s, x, per); err != nil {
						return err
					}
					w, err := ortweb.Run(path, x, []int{3, 32, 32}, 100)
					if err != nil {
						return err
					}
					for k := 0; k < len(w.Data); k += 10 {
						f.web = append(f.web, evaluate.ArgMax(w.Data[k:k+10]))
					}
				}
				files = append(files, f)
			}
		}
		for r := 0; r < rounds; r++ {
			for _, f := range files {
				b1, err := meanMs(f.sess, x, per, 1, runs)
				if err != nil {
					return err
				}
				b64, err := meanMs(f.sess, x, per, 64, max(runs/4, 2))
				if err != nil {
					return err
				}
				f.b1, f.b64 = append(f.b1, b1), append(f.b64, b64)
			}
		}
		orig := files[0]
		for i, f := range files {
			ref := files[i/3*3]
			acc, ag, web := "-", "-", "-"
			if f.top != nil {
				acc, ag = fmt.Sprintf("%.1f", 100*agree(f.top, labels)), fmt.Sprintf("%.1f", 100*agree(f.top, ref.top))
				web = fmt.Sprintf("%.1f", 100*agree(f.web, f.top))
			}
			fmt.Printf("| %s | %s | %d | %.3f | %s | %s | %s | %.3f | %.2f | %.2f | %.2f |\n", f.tag, f.prec, f.bytes, float64(f.bytes)/float64(orig.bytes),
				acc, ag, web, median(f.b1), medianRatio(f.b1, orig.b1), median(f.b64), medianRatio(f.b64, orig.b64))
		}
	}
	return nil
}

func classify(s *ortrun.Session, x []float32, per int) ([]int, error) {
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

// meanMs returns the mean time (see now) in milliseconds of runs runs at the
// given batch size, after one warm-up run.
func meanMs(s *ortrun.Session, x []float32, per, batch, runs int) (float64, error) {
	hw := int64(math.Sqrt(float64(per / 3)))
	in := map[string]ortrun.Tensor{"input": {Shape: []int64{int64(batch), 3, hw, hw}, Data: x[:batch*per]}}
	if _, err := s.Run(in, nil); err != nil {
		return 0, err
	}
	t0, _ := now()
	for i := 0; i < runs; i++ {
		if _, err := s.Run(in, nil); err != nil {
			return 0, err
		}
	}
	t1, _ := now()
	return float64((t1 - t0).Microseconds()) / 1000 / float64(runs), nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func medianRatio(a, b []float64) float64 {
	r := make([]float64, len(a))
	for i := range a {
		r[i] = a[i] / b[i]
	}
	return median(r)
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
