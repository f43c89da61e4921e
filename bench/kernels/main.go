// Command kernels compares the GEMM of engine/kernels with gonum's
// blas32.Gemm on the pointwise-convolution shapes of MobileNetV1 (224x224,
// batch 1) and on batched shapes of a 32x32 fixture, in the same run, and
// prints GFLOP/s and the ratio.
//
//	go run ./bench/kernels [-reps 5] [-min 200ms]
//
// Every number is the best of -reps timed repetitions, each running the
// product for at least -min, so that a busy machine disturbs it less. Two
// rates are printed for each: wall-clock GFLOP/s, and GFLOP per CPU-second
// of the process (getrusage), which time-sharing with other processes does
// not lower; for 2 threads the latter measures per-core efficiency.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"

	"text/tabwriter"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/lprconv/lprconv/engine/kernels"
	"github.com/lprconv/lprconv/internal/cputime"
)

// shape is one GEMM C (m x n) = op(A) (m x k) * op(B) (k x n), possibly a
// batch of count products sharing A (count > 1).
type shape struct {
	name           string
	m, n, k, count int
	transA, transB bool
}

var shapes = []shape{
	{"mbv1 pw1", 64, 12544, 32, 1, false, false},
	{"mbv1 pw2", 128, 3136, 64, 1, false, false},
	{"mbv1 pw3", 128, 3136, 128, 1, false, false},
	{"mbv1 pw4", 256, 784, 128, 1, false, false},
	{"mbv1 pw5", 256, 784, 256, 1, false, false},
	{"mbv1 pw6", 512, 196, 256, 1, false, false},
	{"mbv1 pw7-11", 512, 196, 512, 1, false, false},
	{"mbv1 pw12", 1024, 49, 512, 1, false, false},
	{"mbv1 pw13", 1024, 49, 1024, 1, false, false},
	{"mbv1 fc b1 (A·Bᵀ)", 1, 1000, 1024, 1, false, true},
	{"mbv1 fc b64 (A·Bᵀ)", 64, 1000, 1024, 1, false, true},
	{"pw3 dX (Aᵀ·B)", 128, 3136, 128, 1, true, false},
	{"pw3 dW (A·Bᵀ)", 128, 128, 3136, 1, false, true},
	{"fixture 16x16 x64 batch", 64, 256, 64, 64, false, false},
	{"fixture 4x4 x64 batch", 256, 16, 256, 64, false, false},
}

func main() {
	reps := flag.Int("reps", 5, "timed repetitions per measurement (best is kept)")
	minDur := flag.Duration("min", 200*time.Millisecond, "minimum duration of one repetition")
	flag.Parse()

	ctx1 := kernels.NewContext(1)
	defer ctx1.Close()
	ctx2 := kernels.NewContext(2)
	defer ctx2.Close()
	fmt.Printf("engine/kernels Sgemm vs gonum blas32.Gemm (GOMAXPROCS=%d, NumCPU=%d)\n\n", runtime.GOMAXPROCS(0), runtime.NumCPU())
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "shape\tm\tn\tk\tbatch\tours 1T wall\tours 1T cpu\tours 2T wall\tours 2T cpu\tgonum wall\tgonum cpu\t1T/gonum cpu\t2T/gonum wall\t")
	var sumRatio1, sumRatio2 float64
	for _, s := range shapes {
		r := rand.New(rand.NewPCG(1, 2))
		ar, ac := s.m, s.k
		if s.transA {
			ar, ac = s.k, s.m
		}
		br, bc := s.k, s.n
		if s.transB {
			br, bc = s.n, s.k
		}
		a := randSlice(r, ar*ac)
		b := randSlice(r, br*bc*s.count)
		c := make([]float32, s.m*s.n*s.count)
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k) * float64(s.count)
		ours := func(ctx *kernels.Context) func() {
			if s.count > 1 {
				return func() {
					ctx.SgemmBatched(s.transA, s.transB, s.m, s.n, s.k, 1, a, ac, 0, b, bc, br*bc, 0, c, s.n, s.m*s.n, s.count)
				}
			}
			return func() { ctx.Sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, ac, b, bc, 0, c, s.n) }
		}
		ta, tb := blas.NoTrans, blas.NoTrans
		if s.transA {
			ta = blas.Trans
		}
		if s.transB {
			tb = blas.Trans
		}
		gonum := func() {
			ga := blas32.General{Rows: ar, Cols: ac, Stride: ac, Data: a}
			for i := 0; i < s.count; i++ {
				gb := blas32.General{Rows: br, Cols: bc, Stride: bc, Data: b[i*br*bc : (i+1)*br*bc]}
				gc := blas32.General{Rows: s.m, Cols: s.n, Stride: s.n, Data: c[i*s.m*s.n : (i+1)*s.m*s.n]}
				blas32.Gemm(ta, tb, 1, ga, gb, 0, gc)
			}
		}
		w1, c1 := best(ours(ctx1), *reps, *minDur)
		w2, c2 := best(ours(ctx2), *reps, *minDur)
		wg, cg := best(gonum, *reps, *minDur)
		g := func(t float64) float64 { return flops / t / 1e9 }
		sumRatio1 += cg / c1
		sumRatio2 += wg / w2
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.2fx\t%.2fx\t\n",
			s.name, s.m, s.n, s.k, s.count, g(w1), g(c1), g(w2), g(c2), g(wg), g(cg), cg/c1, wg/w2)
	}
	tw.Flush()
	fmt.Printf("\nmean ratio vs gonum: 1 thread (per CPU-second) %.2fx, 2 threads (wall) %.2fx\n", sumRatio1/float64(len(shapes)), sumRatio2/float64(len(shapes)))
}

// best returns the smallest wall-clock time and the smallest process CPU
// time per call of f over reps repetitions, each running f for at least
// minDur.
func best(f func(), reps int, minDur time.Duration) (wall, cpu float64) {
	f() // warm up buffers and caches
	for rep := 0; rep < reps; rep++ {
		n := 0
		start, cpu0 := time.Now(), cpuTime()
		for time.Since(start) < minDur {
			f()
			n++
		}
		w := time.Since(start).Seconds() / float64(n)
		c := (cpuTime() - cpu0).Seconds() / float64(n)
		if rep == 0 || w < wall {
			wall = w
		}
		if rep == 0 || c < cpu {
			cpu = c
		}
	}
	return wall, cpu
}

// cpuTime returns the user+system CPU time of the process (0 where
// unknown).
func cpuTime() time.Duration {
	d, _ := cputime.Process()
	return d
}

func randSlice(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}
