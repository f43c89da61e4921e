package shapeinfer

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// MatMul returns numpy matmul's output shape: a 1-D operand is promoted to
// a matrix (a row for the first, a column for the second) and the added
// dim removed from the result; the inner dims must agree and the batch
// dims broadcast.
func MatMul(a, b []int64) ([]int64, error) {
	if len(a) == 0 || len(b) == 0 {
		return nil, fmt.Errorf("MatMul operands must have rank >= 1, got %v and %v", a, b)
	}
	a1, b1 := len(a) == 1, len(b) == 1
	if a1 {
		a = []int64{1, a[0]}
	}
	if b1 {
		b = []int64{b[0], 1}
	}
	if a[len(a)-1] != b[len(b)-2] {
		return nil, fmt.Errorf("inner dims differ: %v and %v", a, b)
	}
	batch, err := Broadcast(a[:len(a)-2], b[:len(b)-2])
	if err != nil {
		return nil, err
	}
	out := append(batch, a[len(a)-2], b[len(b)-1])
	if a1 {
		out = append(out[:len(out)-2], out[len(out)-1])
	}
	if b1 {
		out = out[:len(out)-1]
	}
	return out, nil
}

// Gemm returns the dims of Y = alpha*A'*B' + beta*C for matrices A and B
// (A' = A transposed when transA, likewise B'): A' is [m, k], B' is [k, n].
// A non-nil c must broadcast unidirectionally to [m, n].
func Gemm(a, b, c []int64, transA, transB bool) (m, n, k int64, err error) {
	if len(a) != 2 || len(b) != 2 {
		return 0, 0, 0, fmt.Errorf("A %v and B %v must be matrices", a, b)
	}
	m, k = a[0], a[1]
	if transA {
		m, k = k, m
	}
	k2, n := b[0], b[1]
	if transB {
		k2, n = n, k2
	}
	if k != k2 {
		return 0, 0, 0, fmt.Errorf("inner dims differ: A %v (transA=%v), B %v (transB=%v)", a, transA, b, transB)
	}
	if c != nil && !BroadcastsTo(c, []int64{m, n}) {
		return 0, 0, 0, fmt.Errorf("C %v does not broadcast to [%d %d]", c, m, n)
	}
	return m, n, k, nil
}

func (inf *inferer) gemm(n *onnxpb.NodeProto) error {
	a, b := inf.in(n, 0), inf.in(n, 1)
	if a == nil || b == nil {
		return fmt.Errorf("needs inputs A and B")
	}
	var c []int64
	if v := inf.in(n, 2); v != nil {
		c = v.Shape
	}
	m, nn, _, err := Gemm(a.Shape, b.Shape, c, onnxio.AttrInt(n, "transA", 0) != 0, onnxio.AttrInt(n, "transB", 0) != 0)
	if err != nil {
		return err
	}
	inf.set(n, 0, shapeOf([]int64{m, nn}, a.DType))
	return nil
}

func (inf *inferer) matmul(n *onnxpb.NodeProto) error {
	a, b := inf.in(n, 0), inf.in(n, 1)
	if a == nil || b == nil {
		return fmt.Errorf("needs two inputs")
	}
	out, err := MatMul(a.Shape, b.Shape)
	if err != nil {
		return err
	}
	inf.set(n, 0, shapeOf(out, a.DType))
	return nil
}
