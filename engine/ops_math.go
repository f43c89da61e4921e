package engine

import (
	"fmt"
	"math"

	"github.com/lprconv/lprconv/shapeinfer"
)

// GemmOp is Y = alpha * A' * B' + beta * C with C broadcast to [M, N].
type GemmOp struct {
	TransA, TransB bool
	M, N, K        int
	Alpha, Beta    float32
	bc             *broadcast // C broadcast to [M, N]; nil without C
}

func buildGemm(b *nodeBuild) (Op, error) {
	a, err := b.need(0)
	if err != nil {
		return nil, err
	}
	bm, err := b.need(1)
	if err != nil {
		return nil, err
	}
	if !a.dtype.IsFloat() || !bm.dtype.IsFloat() {
		return nil, fmt.Errorf("Gemm supports float tensors only")
	}
	if b.has("broadcast") && b.attrInt("broadcast", 0) == 0 && b.opset < 7 {
		return nil, fmt.Errorf("broadcast=0 (opset < 7) is not supported")
	}
	op := &GemmOp{TransA: b.attrInt("transA", 0) != 0, TransB: b.attrInt("transB", 0) != 0,
		Alpha: b.attrFloat("alpha", 1), Beta: b.attrFloat("beta", 1)}
	cv := b.input(2)
	var cShape []int64
	if cv != nil {
		if !cv.dtype.IsFloat() {
			return nil, fmt.Errorf("C must be float")
		}
		cShape = toInt64s(cv.shape)
	}
	m, n, k, err := shapeinfer.Gemm(toInt64s(a.shape), toInt64s(bm.shape), cShape, op.TransA, op.TransB)
	if err != nil {
		return nil, err
	}
	op.M, op.N, op.K = int(m), int(n), int(k)
	if cv != nil {
		op.bc = newBroadcast(cv.shape, []int{op.M, op.N}, []int{op.M, op.N})
	}
	b.setOut(0, []int{op.M, op.N}, Float32)
	return op, nil
}

// Forward computes the product.
func (op *GemmOp) Forward(c *Ctx, in, out []*Tensor) error {
	y := out[0].F
	var beta float32
	if op.bc != nil && op.Beta != 0 {
		// y = beta * C (broadcast), then accumulate the product
		cf := in[2].F
		broadcastScaled(op.bc, cf, op.Beta, y)
		beta = 1
	}
	lda, ldb := op.K, op.N
	if op.TransA {
		lda = op.M
	}
	if op.TransB {
		ldb = op.K
	}
	c.K.Sgemm(op.TransA, op.TransB, op.M, op.N, op.K, op.Alpha, in[0].F, lda, in[1].F, ldb, beta, y, op.N)
	return nil
}

// broadcastScaled writes s * src broadcast to the output of bc (whose
// second operand is the output shape itself) into y.
func broadcastScaled(bc *broadcast, src []float32, s float32, y []float32) {
	for i := range bc.idx {
		bc.idx[i] = 0
	}
	oa, oy, n := 0, 0, bc.inner
	for r := 0; r < bc.outer; r++ {
		row := y[oy : oy+n]
		if bc.innerA == 1 {
			for i := range row {
				row[i] = s * src[oa+i]
			}
		} else {
			v := s * src[oa]
			for i := range row {
				row[i] = v
			}
		}
		oy += n
		oa = advance(bc.idx, bc.dims, bc.sa, oa)
	}
}

// MatMulOp is a numpy-style matrix product with broadcast batch dims.
type MatMulOp struct {
	M, N, K int
	offA    []int // per batch: offset into A
	offB    []int
	flat    bool // B has no batch dims: one GEMM over all rows of A
}

func buildMatMul(b *nodeBuild) (Op, error) {
	a, err := b.need(0)
	if err != nil {
		return nil, err
	}
	bm, err := b.need(1)
	if err != nil {
		return nil, err
	}
	if !a.dtype.IsFloat() || !bm.dtype.IsFloat() {
		return nil, fmt.Errorf("MatMul supports float tensors only")
	}
	outShape, err := shapeinfer.MatMul(toInt64s(a.shape), toInt64s(bm.shape))
	if err != nil {
		return nil, err
	}
	as, bs := a.shape, bm.shape
	var outTail []int
	if len(as) == 1 {
		as = []int{1, as[0]}
	} else {
		outTail = append(outTail, as[len(as)-2])
	}
	if len(bs) == 1 {
		bs = []int{bs[0], 1}
	} else {
		outTail = append(outTail, bs[len(bs)-1])
	}
	op := &MatMulOp{M: as[len(as)-2], K: as[len(as)-1], N: bs[len(bs)-1]}
	batch := toInts(outShape[:len(outShape)-len(outTail)])
	nb := sizeOf(batch)
	if sizeOf(bs[:len(bs)-2]) == 1 {
		op.flat = true
	} else {
		sa := bcastStrides(as[:len(as)-2], batch)
		sb := bcastStrides(bs[:len(bs)-2], batch)
		idx := make([]int, len(batch))
		for i := 0; i < nb; i++ {
			oa, ob := 0, 0
			for d := range batch {
				oa += idx[d] * sa[d]
				ob += idx[d] * sb[d]
			}
			op.offA = append(op.offA, oa*op.M*op.K)
			op.offB = append(op.offB, ob*op.K*op.N)
			for d := len(batch) - 1; d >= 0; d-- {
				idx[d]++
				if idx[d] < batch[d] {
					break
				}
				idx[d] = 0
			}
		}
	}
	if op.flat && sizeOf(as[:len(as)-2]) != nb {
		return nil, fmt.Errorf("internal: batch mismatch")
	}
	b.setOut(0, toInts(outShape), Float32)
	return op, nil
}

// Forward computes the product.
func (op *MatMulOp) Forward(c *Ctx, in, out []*Tensor) error {
	a, bm, y := in[0].F, in[1].F, out[0].F
	if op.flat {
		rows := len(y) / max(op.N, 1)
		if op.N == 0 {
			return nil
		}
		c.K.Sgemm(false, false, rows, op.N, op.K, 1, a, op.K, bm, op.N, 0, y, op.N)
		return nil
	}
	mn := op.M * op.N
	for i := range op.offA {
		c.K.Sgemm(false, false, op.M, op.N, op.K, 1, a[op.offA[i]:], op.K, bm[op.offB[i]:], op.N, 0, y[i*mn:(i+1)*mn], op.N)
	}
	return nil
}

// SoftmaxOp normalizes exp(x) over a range of axes: Len values at stride
// Inner, for Outer*Inner independent groups.
type SoftmaxOp struct {
	Outer, Len, Inner int
	Log               bool
}

func buildSoftmax(log bool) func(b *nodeBuild) (Op, error) {
	return func(b *nodeBuild) (Op, error) {
		x, err := b.need(0)
		if err != nil {
			return nil, err
		}
		if !x.dtype.IsFloat() {
			return nil, fmt.Errorf("softmax supports float tensors only")
		}
		rank := len(x.shape)
		op := &SoftmaxOp{Log: log}
		if rank == 0 {
			op.Outer, op.Len, op.Inner = 1, 1, 1
		} else if b.opset < 13 {
			axis, err := shapeinfer.NormAxis(b.attrInt("axis", 1), rank)
			if err != nil {
				return nil, err
			}
			op.Outer, op.Len, op.Inner = sizeOf(x.shape[:axis]), sizeOf(x.shape[axis:]), 1
		} else {
			axis, err := shapeinfer.NormAxis(b.attrInt("axis", -1), rank)
			if err != nil {
				return nil, err
			}
			op.Outer, op.Len, op.Inner = sizeOf(x.shape[:axis]), x.shape[axis], sizeOf(x.shape[axis+1:])
		}
		b.setOut(0, x.shape, Float32)
		return op, nil
	}
}

// Forward computes the softmax.
func (op *SoftmaxOp) Forward(c *Ctx, in, out []*Tensor) error {
	x, y := in[0].F, out[0].F
	for o := 0; o < op.Outer; o++ {
		for i := 0; i < op.Inner; i++ {
			base := o*op.Len*op.Inner + i
			m := float32(math.Inf(-1))
			for j := 0; j < op.Len; j++ {
				m = max(m, x[base+j*op.Inner])
			}
			var s float64
			for j := 0; j < op.Len; j++ {
				e := math.Exp(float64(x[base+j*op.Inner] - m))
				s += e
				if !op.Log {
					y[base+j*op.Inner] = float32(e)
				}
			}
			if op.Log {
				ls := float32(math.Log(s))
				for j := 0; j < op.Len; j++ {
					y[base+j*op.Inner] = x[base+j*op.Inner] - m - ls
				}
				continue
			}
			inv := float32(1 / s)
			for j := 0; j < op.Len; j++ {
				y[base+j*op.Inner] *= inv
			}
		}
	}
	return nil
}

// ReduceOp reduces a float tensor over a set of axes (mean or sum).
type ReduceOp struct {
	Mean    bool
	inShape []int
	reduced []bool
	outIdx  []int // for each input element's dims: output strides
	count   int
	copyAll bool
	cnt     []int // odometer over the outer dims
}

func buildReduce(mean bool) func(b *nodeBuild) (Op, error) {
	return func(b *nodeBuild) (Op, error) {
		x, err := b.need(0)
		if err != nil {
			return nil, err
		}
		if !x.dtype.IsFloat() {
			return nil, fmt.Errorf("%s supports float tensors only", b.node.OpType)
		}
		axes := b.attrInts("axes")
		if b.nIn() > 1 && b.input(1) != nil {
			if axes != nil {
				return nil, fmt.Errorf("axes given both as attribute and input")
			}
			axes, err = b.constInts(1, "axes")
			if err != nil {
				return nil, err
			}
		}
		noop := b.attrInt("noop_with_empty_axes", 0) != 0
		out, reduced, err := shapeinfer.Reduce(toInt64s(x.shape), axes, b.attrInt("keepdims", 1) != 0, noop)
		if err != nil {
			return nil, err
		}
		op := &ReduceOp{Mean: mean, inShape: x.shape, reduced: reduced}
		if len(axes) == 0 && noop {
			op.copyAll = true
			b.setOut(0, x.shape, Float32)
			return op, nil
		}
		var keptShape []int
		op.count = 1
		for i, d := range x.shape {
			if op.reduced[i] {
				op.count *= d
				keptShape = append(keptShape, 1)
				continue
			}
			keptShape = append(keptShape, d)
		}
		op.outIdx = bcastStrides(keptShape, x.shape)
		if sizeOf(x.shape) > 0 {
			// walk the fewest, longest rows
			cs, strides := collapseDims(x.shape, op.outIdx)
			op.inShape, op.outIdx = cs, strides[0]
		}
		op.cnt = make([]int, max(len(op.inShape)-1, 0))
		b.setOut(0, toInts(out), Float32)
		return op, nil
	}
}

// Forward reduces.
func (op *ReduceOp) Forward(c *Ctx, in, out []*Tensor) error {
	x, y := in[0].F, out[0].F
	if op.copyAll {
		copy(y, x)
		return nil
	}
	clear(y)
	rank := len(op.inShape)
	if rank == 0 {
		y[0] = x[0]
		return nil
	}
	// walk the input in order; the last dim is the inner loop
	last := op.inShape[rank-1]
	ls := op.outIdx[rank-1]
	outer := len(x) / max(last, 1)
	cnt := op.cnt
	clear(cnt)
	yo := 0
	for r := 0; r < outer; r++ {
		row := x[r*last : (r+1)*last]
		if ls == 0 {
			var s float32
			for _, v := range row {
				s += v
			}
			y[yo] += s
		} else {
			yr := y[yo : yo+last]
			for j, v := range row {
				yr[j] += v
			}
		}
		yo = advance(cnt[:rank-1], op.inShape[:rank-1], op.outIdx[:rank-1], yo)
	}
	if op.Mean && op.count > 0 {
		n := float32(op.count)
		for i := range y {
			y[i] /= n
		}
	}
	return nil
}
