// Command svdbench times the svd package on the 8 MobileNetV1-1.0 pointwise
// matrices written by gen_and_torch.py and checks the error of the factors
// against the Eckart–Young optimum computed from the known singular values.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"

	"time"

	"github.com/lprconv/lprconv/internal/cputime"
	"github.com/lprconv/lprconv/svd"
	"github.com/lprconv/lprconv/svd/enginegemm"
)

var sizes = []int{128, 256, 512, 512, 512, 512, 512, 1024}

func main() {
	dir := flag.String("dir", "", "folder written by gen_and_torch.py gen")
	kindName := flag.String("kind", "none", "residual kind")
	workers := flag.Int("workers", 2, "layers factorized concurrently")
	ratio := flag.Float64("ratio", 0.25, "rank as a fraction of C (rounded up)")
	degree := flag.Int("degree", 0, "Chebyshev filter degree (0: the package default)")
	precise := flag.Bool("precise", false, "float64 products in the subspace iteration")
	sgemm := flag.String("sgemm", "engine", "float32 GEMM for the subspace iteration: engine (engine/kernels) or gonum")
	prof := flag.String("cpuprofile", "", "write a CPU profile of the factorization to this file")
	flag.Parse()
	opts := svd.Options{Precise: *precise, Degree: *degree}
	switch *sgemm {
	case "engine":
		opts.Sgemm = enginegemm.New(0)
	case "gonum":
	default:
		fmt.Fprintf(os.Stderr, "svdbench: unknown -sgemm %q (want engine or gonum)\n", *sgemm)
		os.Exit(2)
	}
	if err := run(*dir, *kindName, *workers, *ratio, opts, *prof); err != nil {
		fmt.Fprintln(os.Stderr, "svdbench:", err)
		os.Exit(1)
	}
}

func run(dir, kindName string, workers int, ratio float64, opts svd.Options, prof string) error {
	if !(ratio > 0 && ratio <= 1) {
		return fmt.Errorf("ratio %v must be in (0, 1]", ratio)
	}
	kind, err := svd.ParseResidual(kindName)
	if err != nil {
		return err
	}
	var jobs []svd.Job
	var spectra [][]float64
	for i, c := range sizes {
		w, err := readF32(filepath.Join(dir, fmt.Sprintf("w%d_%d.f32", i, c)), c*c)
		if err != nil {
			return err
		}
		s, err := readF64(filepath.Join(dir, fmt.Sprintf("s%d_%d.f64", i, c)), c)
		if err != nil {
			return err
		}
		jobs = append(jobs, svd.Job{Name: fmt.Sprintf("pw%d", i), W: w, Out: c, In: c, Rank: int(math.Ceil(ratio * float64(c))), Kind: kind})
		spectra = append(spectra, s)
	}
	if prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuSeconds()
	start := time.Now()
	fs, err := svd.FactorizeAll(context.Background(), jobs, opts, workers)
	if err != nil {
		return err
	}
	dt := time.Since(start)
	worstGap, worst := 0.0, 0.0
	iters := 0
	for i, f := range fs {
		iters += f.Iterations
		opt := svd.OptimalRelErr(spectra[i], f.Rank)
		worstGap = math.Max(worstGap, f.RelErr-opt)
		worst = math.Max(worst, f.RelErr)
	}
	fmt.Printf("go_seconds %.4f go_cpu_seconds %.4f kind %v worst_relerr %.5f", dt.Seconds(), cpuSeconds()-cpu0, kind, worst)
	if kind.Type == svd.None {
		fmt.Printf(" worst_gap_to_eckart_young %.2e", worstGap)
	}
	if kind.Type == svd.Diag || kind.Type == svd.Depthwise {
		fmt.Printf(" alternations %d", iters)
	}
	fmt.Println()
	return nil
}

func readF32(path string, n int) ([]float32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) != 4*n {
		return nil, fmt.Errorf("%s: %d bytes, want %d", path, len(b), 4*n)
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

func readF64(path string, n int) ([]float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) != 8*n {
		return nil, fmt.Errorf("%s: %d bytes, want %d", path, len(b), 8*n)
	}
	v := make([]float64, n)
	for i := range v {
		v[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return v, nil
}

// cpuSeconds returns the user plus system CPU time of the process (NaN
// where unknown).
func cpuSeconds() float64 {
	s, ok := cputime.Seconds()
	if !ok {
		return math.NaN()
	}
	return s
}
