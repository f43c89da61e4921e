package kernels

import (
	"fmt"
	"math"
)

// Epilogue is element-wise work fused into the output of a GEMM, applied
// while each tile of C is still in cache: after C = alpha*op(A)*op(B) +
// beta*C, RowBias[i] is added to row i and ColBias[j] to column j (either
// may be nil), and then, when Clip is set, every value is clamped to
// [Min, Max]. A convolution written as a GEMM in NCHW has its bias per row
// (output channel); ONNX Gemm has it per column. NaN stays NaN.
type Epilogue struct {
	RowBias, ColBias []float32
	Clip             bool
	Min, Max         float32
}

// ReluEpilogue returns an Epilogue that adds the given biases (nil for
// none) and applies max(x, 0).
func ReluEpilogue(rowBias, colBias []float32) Epilogue {
	return Epilogue{RowBias: rowBias, ColBias: colBias, Clip: true, Min: 0, Max: float32(math.Inf(1))}
}

// active reports whether e does anything.
func (e *Epilogue) active() bool {
	return e.RowBias != nil || e.ColBias != nil || e.Clip
}

func (e *Epilogue) check(m, n int) {
	if e.RowBias != nil && len(e.RowBias) < m {
		panic(fmt.Sprintf("kernels: Epilogue.RowBias has %d values, need %d", len(e.RowBias), m))
	}
	if e.ColBias != nil && len(e.ColBias) < n {
		panic(fmt.Sprintf("kernels: Epilogue.ColBias has %d values, need %d", len(e.ColBias), n))
	}
}

// bounds returns the clamp interval (infinite when Clip is off).
func (e *Epilogue) bounds() (lo, hi float32) {
	if !e.Clip {
		return float32(math.Inf(-1)), float32(math.Inf(1))
	}
	return e.Min, e.Max
}

// rowTile returns the row biases of rows i0 to i0+rows (zeros when e has
// none) and the clamp interval, for the fused-epilogue micro-kernels.
func (e *Epilogue) rowTile(i0, rows int) (bias []float32, lo, hi float32) {
	bias = zeroBias[:rows]
	if e.RowBias != nil {
		bias = e.RowBias[i0 : i0+rows]
	}
	lo, hi = e.bounds()
	return bias, lo, hi
}

// zeroBias stands for a missing row bias in rowTile (at least the rows of
// any micro-kernel tile); it is never written.
var zeroBias [32]float32

// applyTile applies e to rows x cols values of c (row stride ldc) whose
// first row is row i0 of the product and first column is column j0.
func (e *Epilogue) applyTile(c []float32, ldc, rows, cols, i0, j0 int) {
	if rows == 0 || cols == 0 {
		return
	}
	var rb, cb []float32
	if e.RowBias != nil {
		rb = e.RowBias[i0 : i0+rows]
	}
	if e.ColBias != nil {
		cb = e.ColBias[j0 : j0+cols]
	}
	lo, hi := e.bounds()
	biasActTile(c, ldc, rows, cols, rb, cb, lo, hi)
}

// biasActTileGeneric is the portable biasActTile.
func biasActTileGeneric(c []float32, ldc, rows, cols int, rowBias, colBias []float32, lo, hi float32) {
	for i := 0; i < rows; i++ {
		row := c[i*ldc : i*ldc+cols]
		var b float32
		if rowBias != nil {
			b = rowBias[i]
		}
		if colBias != nil {
			cb := colBias[:cols]
			for j, v := range row {
				row[j] = clamp(v+b+cb[j], lo, hi)
			}
			continue
		}
		for j, v := range row {
			row[j] = clamp(v+b, lo, hi)
		}
	}
}

// clamp returns v limited to [lo, hi], keeping NaN.
func clamp(v, lo, hi float32) float32 {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}
