package engine

import (
	"fmt"
	"math"

	"github.com/lprconv/lprconv/engine/kernels"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Op is the compiled form of one ONNX node. Compile builds it once for
// fixed input shapes; Forward then runs it any number of times.
//
// Forward reads in (nil for an absent optional input) and writes every
// element of out, whose tensors are preallocated with the inferred shapes
// and may hold stale data from an earlier use of the same buffer. Forward
// must not allocate in steady state and must not keep in or out.
type Op interface {
	Forward(c *Ctx, in, out []*Tensor) error
}

// Backwarder is implemented by ops that can propagate gradients. Backward
// receives the forward inputs and outputs as they were after Forward (the
// program keeps them alive when compiled with KeepForBackward), the
// gradients of the outputs dOut (nil where no gradient flows), and adds the
// gradient of each input into dIn[i] (nil where none is wanted; the caller
// zeroes these buffers before the backward pass, so fan-out accumulates).
type Backwarder interface {
	Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error
}

// Aliaser is implemented by view ops (Reshape, Flatten, Squeeze, Unsqueeze,
// Identity, Dropout in inference): their output 0 shares the storage of
// input AliasInput() and Forward does nothing.
type Aliaser interface {
	AliasInput() int
}

// Scratcher is implemented by ops that need temporary float32 storage
// during Forward (for example the im2col buffer of a convolution); the
// program allocates the largest request once and hands it out via
// Ctx.Scratch.
type Scratcher interface {
	ScratchFloats() int
}

// Ctx is the per-program execution context handed to every op.
type Ctx struct {
	// K runs the GEMM and convolution kernels on the program's threads.
	K *kernels.Context
	// Threads is the number of threads ops may use.
	Threads int
	scratch []float32
	pool    *pool
	bw      bwWork // element-wise backward loops on the pool (backward_parallel.go)
}

// Scratch returns a float32 buffer of length n. Its content is undefined;
// it is reused by the next op.
func (c *Ctx) Scratch(n int) []float32 {
	if cap(c.scratch) < n {
		c.scratch = make([]float32, n)
	}
	return c.scratch[:n]
}

// nodeBuild is what an op builder sees of a node: its attributes, the
// inferred shapes, types and (when constant) values of its inputs, and the
// slots for the shapes and types of its outputs.
type nodeBuild struct {
	node  *onnxpb.NodeProto
	index int
	opset int
	in    []*value // nil for an absent optional input
	outs  []outSpec
	attrs map[string]*onnxpb.AttributeProto
}

type outSpec struct {
	shape []int
	dtype DType
	set   bool
	konst *Tensor // set when the builder computed the value already
}

// nIn returns the number of inputs given (counting absent ones before the
// last present one).
func (b *nodeBuild) nIn() int { return len(b.in) }

// input returns input i or nil when absent.
func (b *nodeBuild) input(i int) *value {
	if i < len(b.in) {
		return b.in[i]
	}
	return nil
}

// need returns input i or an error when it is absent.
func (b *nodeBuild) need(i int) (*value, error) {
	v := b.input(i)
	if v == nil {
		return nil, fmt.Errorf("input %d is required", i)
	}
	return v, nil
}

// constInts returns the int64 values of a constant input, or an error when
// the input is computed at run time.
func (b *nodeBuild) constInts(i int, what string) ([]int64, error) {
	v := b.input(i)
	if v == nil {
		return nil, nil
	}
	if v.konst == nil {
		return nil, fmt.Errorf("%s (input %d, %q) must be a constant; it is computed at run time", what, i, v.name)
	}
	if v.konst.DType.IsFloat() {
		return nil, fmt.Errorf("%s (input %d, %q) must be an integer tensor", what, i, v.name)
	}
	return v.konst.I, nil
}

// constFloat returns a scalar of a constant float input, def when absent.
func (b *nodeBuild) setOut(i int, shape []int, dt DType) {
	if i < len(b.outs) {
		b.outs[i] = outSpec{shape: append([]int(nil), shape...), dtype: dt, set: true}
	}
}

func (b *nodeBuild) setConst(i int, t *Tensor) {
	if i < len(b.outs) {
		b.outs[i] = outSpec{shape: t.Shape, dtype: t.DType, set: true, konst: t}
	}
}

func (b *nodeBuild) attr(name string) *onnxpb.AttributeProto { return b.attrs[name] }

func (b *nodeBuild) has(name string) bool { return b.attrs[name] != nil }

func (b *nodeBuild) attrInt(name string, def int64) int64 {
	if a := b.attrs[name]; a != nil {
		return a.I
	}
	return def
}

func (b *nodeBuild) attrFloat(name string, def float32) float32 {
	if a := b.attrs[name]; a != nil {
		return a.F
	}
	return def
}

func (b *nodeBuild) attrInts(name string) []int64 {
	if a := b.attrs[name]; a != nil {
		return a.Ints
	}
	return nil
}

// checkAttrs verifies attribute types; names were already checked against
// the op's list.
func checkAttrType(a *onnxpb.AttributeProto) error {
	if a.RefAttrName != "" {
		return fmt.Errorf("attribute %q refers to a function attribute; only plain graphs are supported", a.Name)
	}
	return nil
}

// clampInt64 converts v to int, saturating at the int range.
func clampInt64(v int64) int {
	if v > math.MaxInt32 {
		return math.MaxInt32
	}
	if v < math.MinInt32 {
		return math.MinInt32
	}
	return int(v)
}
