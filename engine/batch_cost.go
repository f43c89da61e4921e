package engine

import (
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Constants of the cost model that chooses between batch-level and
// op-level splitting, in floating-point operations (element-wise ops count
// one per element they write).
const (
	// dispatchCost is what one op-level split costs beyond its work: waking
	// the kernel threads and waiting for the slowest (a few microseconds,
	// i.e. about 1e5 operations of one AVX2 core).
	dispatchCost = 1e5
	// splitGrain is the least work per thread for which the kernels split
	// a dispatch at all.
	splitGrain = 1e5
)

// chooseWorkers returns the number of batch slices W (1: op-level only)
// for batch images on threads threads. It compiles the graph for one image
// on one thread to learn every step's work per image f_i and number of
// kernel dispatches per image, then estimates for each W from 1 to
// min(threads, batch), with n = ceil(batch/W) images per slice and
// t = threads/W threads inside a slice,
//
//	T(W) = sum_i d_i * (f_i*n/d_i / p_i + dispatchCost*[p_i > 1]),
//	p_i  = min(t, max(1, floor(f_i*n/d_i / splitGrain)))
//
// where d_i is the number of dispatches of step i for n images (one per
// image for convolutions run image by image, one otherwise). It returns
// the W with the least T (the fewest workers on ties). Small planes (little
// work per dispatch) therefore go to batch slices, large planes with few
// images keep op-level splitting, and a batch that does not divide well
// (3 images on 2 threads) pays its imbalance ceil(B/W)/(B/W).
func chooseWorkers(probe *Program, batch, threads int) int {
	best, bestT := 1, 0.0
	for w := 1; w <= min(threads, batch); w++ {
		n := (batch + w - 1) / w
		t := max(1, threads/w)
		total := 0.0
		for _, st := range probe.steps {
			f, perImage := stepWork(st)
			d := 1.0
			if perImage {
				d = float64(n)
			}
			work := f * float64(n) / d
			parts := float64(min(t, max(1, int(work/splitGrain))))
			total += d * (work / parts)
			if parts > 1 {
				total += d * dispatchCost
			}
		}
		if w == 1 || total < bestT {
			best, bestT = w, total
		}
	}
	return best
}

// probeOne compiles m for one image on one thread (nil if the graph does
// not compile for one image: it is then not cut along the batch).
func probeOne(m *onnxpb.ModelProto, opts Options, shapes map[string][]int) *Program {
	o := opts
	o.Threads = 1
	o.InputShapes = map[string][]int{}
	for name, s := range shapes {
		o.InputShapes[name] = append([]int{1}, s[1:]...)
	}
	p, err := Compile(m, o)
	if err != nil {
		return nil
	}
	return p
}

// sliceArenaBudget is the activation arena a slice should fit in, in
// bytes: about the L2 cache of one core. Measured once on the 32x32
// fixtures at one thread (AMD EPYC, 2 MiB L2, a shared machine, 21
// interleaved repetitions): MobileNetV1 ran a batch of 64 as two slices of
// 32 images (arena 0.9 MiB each) 1.47-1.54x faster than as one of 64
// (1.8 MiB), and as four of 16 1.39-1.42x; ShuffleNetV2 (1.2 MiB per 32
// images) was as fast in slices of 32 as in one batch, and 0.86x in slices
// of 16. bench/engine did not reproduce the one-thread gain (see
// bench/engine/RESULTS.md), so the value is provisional.
const sliceArenaBudget = 5 << 18 // 1.25 MiB

// minSliceImages is the least number of images a slice is cut to for
// cache reasons: smaller slices run the kernels on too little work per
// call.
const minSliceImages = 8

// slicesFor returns the number of slices K for batch images on workers
// goroutines, given the activation arena of one image (imageBytes). For
// inference K is a multiple of workers (every worker gets as many slices)
// and as small as keeps each slice's arena within sliceArenaBudget (slices
// of at least minSliceImages images). Programs kept for backward get one
// slice per worker (K = W; 1 at one thread, so that one-thread training
// keeps the gradient summation order of a single Program): their arena
// holds every activation of the pass, so it does not fit a cache at any
// useful slice size, and fewer slices mean less reduction work.
func slicesFor(batch, workers, imageBytes int, training bool) int {
	if training {
		return workers
	}
	per := max(minSliceImages, sliceArenaBudget/max(imageBytes, 1))
	k := max(1, (batch+per-1)/per)
	k = (k + workers - 1) / workers * workers
	return min(batch, max(k, workers))
}

// stepWork returns the work of a step compiled for one image (in
// operations) and whether the step dispatches its kernels image by image.
func stepWork(st *Step) (float64, bool) {
	switch op := st.Op.(type) {
	case *ConvOp:
		g := op.Geom
		f := 2 * float64(op.M) * float64(g.OH*g.OW) * float64(g.C*g.KH*g.KW)
		return f, op.Chunk == 0
	case *GemmOp:
		return 2 * float64(op.M) * float64(op.N) * float64(op.K), false
	case *MatMulOp:
		return 2 * float64(op.M) * float64(op.N) * float64(op.K) * float64(max(1, len(op.offA))), false
	}
	n := 0
	for _, t := range st.Out {
		if t != nil {
			n += len(t.F) + len(t.I)
		}
	}
	return float64(n), false
}

// sharedInit returns the value of p (nil-safe) holding the initializer
// name, for a program compiled to share p's weights (nil if none).
func (p *Program) sharedInit(name string) *value {
	if p == nil {
		return nil
	}
	v := p.byName[name]
	if v == nil || v.input || v.def >= 0 || (v.konst == nil && !v.param) {
		return nil
	}
	return v
}

// folded returns p's (nil-safe) folded BatchNormalization weight name if it
// holds n floats, for a program compiled to share p's weights.
func (p *Program) folded(name string, n int) []float32 {
	if p == nil {
		return nil
	}
	if t := p.bnFolded[name]; t != nil && len(t.F) == n {
		return t.F
	}
	return nil
}
