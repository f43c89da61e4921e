package engine

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Model holds an ONNX model and compiles one Batched program per set of
// input shapes on demand (batch-parallel where it pays, see
// CompileBatched), so that callers can change the batch size freely.
type Model struct {
	proto *onnxpb.ModelProto
	opts  Options
	mu    sync.Mutex
	progs map[string]*Batched
}

// maxCachedPrograms bounds the per-shape cache; the oldest entries are not
// tracked, so the cache is simply cleared when full. Clearing it does not
// close the programs: one a caller still holds (from Batched, or running
// in another goroutine's Run) stays valid, and the threads of the others
// are released by their cleanups once nothing reaches them.
const maxCachedPrograms = 8

// NewModel checks that m compiles with opts (its default input shapes) and
// returns a Model that recompiles for other input shapes as needed.
func NewModel(m *onnxpb.ModelProto, opts Options) (*Model, error) {
	md := &Model{proto: m, opts: opts, progs: map[string]*Batched{}}
	p, err := CompileBatched(m, opts, 0)
	if err != nil {
		return nil, err
	}
	md.progs[shapeKey(p.inputShapes())] = p
	return md, nil
}

func (p *Program) inputShapes() map[string][]int {
	s := map[string][]int{}
	for _, v := range p.inputs {
		s[v.name] = v.shape
	}
	return s
}

// inputShapes returns the full-batch shapes of the graph inputs.
func (b *Batched) inputShapes() map[string][]int {
	s := b.slices[0].p.inputShapes()
	if len(b.slices) > 1 {
		for n, d := range s {
			s[n] = append([]int{b.batch}, d[1:]...)
		}
	}
	return s
}

func shapeKey(shapes map[string][]int) string {
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	sort.Strings(names)
	var sb strings.Builder
	for _, n := range names {
		fmt.Fprintf(&sb, "%s:%v;", n, shapes[n])
	}
	return sb.String()
}

// Batched returns the program compiled for the given input shapes.
func (md *Model) Batched(shapes map[string][]int) (*Batched, error) {
	key := shapeKey(shapes)
	md.mu.Lock()
	defer md.mu.Unlock()
	if p := md.progs[key]; p != nil {
		return p, nil
	}
	opts := md.opts
	opts.InputShapes = shapes
	p, err := CompileBatched(md.proto, opts, 0)
	if err != nil {
		return nil, err
	}
	if len(md.progs) >= maxCachedPrograms {
		clear(md.progs)
	}
	md.progs[key] = p
	return p, nil
}

// Run runs the model on inputs, compiling a program for their shapes the
// first time they are seen.
func (md *Model) Run(inputs map[string]*Tensor) (map[string]*Tensor, error) {
	shapes := make(map[string][]int, len(inputs))
	for n, t := range inputs {
		shapes[n] = t.Shape
	}
	p, err := md.Batched(shapes)
	if err != nil {
		return nil, err
	}
	return p.Run(inputs)
}

// Close releases the threads of every cached program.
func (md *Model) Close() {
	md.mu.Lock()
	defer md.mu.Unlock()
	for k, p := range md.progs {
		p.Close()
		delete(md.progs, k)
	}
}
