package quantize

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// DefaultKeepFloat32 returns the operator types that ToFloat16 leaves in
// float32 by default: those for which ONNX Runtime 1.24.3's CPU execution
// provider has no float16 kernel on x86-64. ONNX Runtime still loads such
// a float16 node, but only by inserting a Cast to float32 before it and one
// back after it. TestFP16KernelList measures this for every float operator
// type of the fixtures and of their LPR-compressed forms (Conv, Relu, Add,
// MaxPool, GlobalAveragePool, ReduceMean, Concat, Slice, Reshape,
// Transpose, Flatten have float16 kernels; Gemm has none). The float16
// weights of a kept node reach it through a Cast, which ONNX Runtime
// constant-folds when the session starts.
func DefaultKeepFloat32() []string {
	return []string{"Gemm"}
}

// FP16Options tunes ToFloat16.
type FP16Options struct {
	// KeepFloat32 lists operator types left in float32; nil means
	// DefaultKeepFloat32, and an empty non-nil slice converts every
	// operator ToFloat16 knows.
	KeepFloat32 []string
}

// FP16Report says what ToFloat16 did.
type FP16Report struct {
	// Converted and Kept count, per operator type, the nodes that compute
	// in float16 and the float nodes left in float32.
	Converted map[string]int `json:"converted"`
	Kept      map[string]int `json:"kept_float32"`
	// Initializers counts the float32 initializers (and Constant nodes)
	// stored as float16 now, Casts the Cast nodes added.
	Initializers int `json:"initializers"`
	Casts        int `json:"casts"`
}

// ToFloat16 returns a copy of m whose float32 initializers and float
// Constant nodes are stored as float16, whose float nodes compute in
// float16 unless their type is in opts.KeepFloat32, and whose inputs and
// outputs keep their float32 type, with Cast nodes wherever a value's
// producer and consumer disagree. value_info entries follow the new types,
// and metadata records the conversion (MetadataKey). m is not modified.
func ToFloat16(m *onnxpb.ModelProto, opts FP16Options) (*onnxpb.ModelProto, *FP16Report, error) {
	keep := opts.KeepFloat32
	if keep == nil {
		keep = DefaultKeepFloat32()
	}
	out := proto.Clone(m).(*onnxpb.ModelProto)
	g := out.GetGraph()
	if g == nil {
		return nil, nil, fmt.Errorf("fp16: model has no graph")
	}
	orig, err := elemTypes(g)
	if err != nil {
		return nil, nil, fmt.Errorf("fp16: %w", err)
	}
	rep := &FP16Report{Converted: map[string]int{}, Kept: map[string]int{}}
	cur := map[string]onnxio.DataType{}
	for k, v := range orig {
		cur[k] = v
	}
	for _, t := range g.GetInitializer() {
		if onnxio.DataType(t.GetDataType()) != onnxio.Float {
			continue
		}
		if err := tensorToHalf(t); err != nil {
			return nil, nil, fmt.Errorf("fp16: initializer %q: %w", t.GetName(), err)
		}
		cur[t.GetName()] = onnxio.Float16
		rep.Initializers++
		for _, in := range g.GetInput() {
			if in.GetName() == t.GetName() {
				in.GetType().GetTensorType().ElemType = int32(onnxio.Float16)
			}
		}
	}
	nm := onnxio.GraphNames(g)
	casts := map[string]string{} // value + "\x00" + type → cast output
	var nodes []*onnxpb.NodeProto
	castTo := func(v string, to onnxio.DataType) string {
		key := v + "\x00" + to.String()
		if c, ok := casts[key]; ok {
			return c
		}
		suffix := "/to_fp32"
		if to == onnxio.Float16 {
			suffix = "/to_fp16"
		}
		c := nm.Fresh(v + suffix)
		nodes = append(nodes, castNode(nm.Fresh(v+suffix), v, c, to))
		casts[key] = c
		cur[c] = to
		rep.Casts++
		return c
	}
	for _, n := range g.GetNode() {
		op := n.GetOpType()
		if op == "Constant" && onnxio.IsDefaultDomain(n) {
			if a := onnxio.Attr(n, "value"); a != nil && onnxio.DataType(a.GetT().GetDataType()) == onnxio.Float {
				if err := tensorToHalf(a.GetT()); err != nil {
					return nil, nil, fmt.Errorf("fp16: Constant node %q: %w", n.GetName(), err)
				}
				cur[n.GetOutput()[0]] = onnxio.Float16
				rep.Initializers++
			}
			nodes = append(nodes, n)
			continue
		}
		anyType := onnxio.IsDefaultDomain(n) && (op == "Cast" || op == "Shape" || op == "Size")
		hasFloat := false
		for i, v := range n.GetInput() {
			if v != "" && isFloatSlot(op, i) && orig[v] == onnxio.Float {
				hasFloat = true
			}
		}
		conv := hasFloat && onnxio.IsDefaultDomain(n) && !slices.Contains(keep, op)
		if hasFloat {
			if conv {
				rep.Converted[op]++
			} else {
				rep.Kept[op]++
			}
		}
		for i, v := range n.GetInput() {
			if v == "" || anyType {
				continue
			}
			want := orig[v]
			if conv && isFloatSlot(op, i) && want == onnxio.Float {
				want = onnxio.Float16
			}
			if cur[v] != want {
				n.Input[i] = castTo(v, want)
			}
		}
		nodes = append(nodes, n)
		if conv {
			for _, o := range n.GetOutput() {
				if o != "" && orig[o] == onnxio.Float {
					cur[o] = onnxio.Float16
				}
			}
		}
	}
	// Graph outputs keep their type: the producer writes a renamed value
	// and a Cast writes the output.
	for _, o := range g.GetOutput() {
		name := o.GetName()
		if cur[name] == orig[name] {
			continue
		}
		inner := nm.Fresh(name + "/fp16")
		for _, n := range nodes {
			for i, v := range n.GetInput() {
				if v == name {
					n.Input[i] = inner
				}
			}
			for i, v := range n.GetOutput() {
				if v == name {
					n.Output[i] = inner
				}
			}
		}
		cur[inner] = cur[name]
		nodes = append(nodes, castNode(nm.Fresh(name+"/to_fp32"), inner, name, orig[name]))
		cur[name] = orig[name]
		rep.Casts++
		for _, vi := range g.GetValueInfo() {
			if vi.GetName() == name {
				vi.Name = inner
			}
		}
	}
	g.Node = nodes
	for _, vi := range g.GetValueInfo() {
		if t, ok := cur[vi.GetName()]; ok {
			setValueType(g, vi.GetName(), t)
		}
	}
	if err := writeMetadata(out, Metadata{Precision: "fp16", KeepFloat32: keep}); err != nil {
		return nil, nil, err
	}
	return out, rep, nil
}

// tensorToHalf rewrites a FLOAT tensor in place as FLOAT16 raw data.
func tensorToHalf(t *onnxpb.TensorProto) error {
	f, err := onnxio.Float32s(t)
	if err != nil {
		return err
	}
	raw := make([]byte, 2*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint16(raw[2*i:], Float32ToHalf(v))
	}
	t.DataType = int32(onnxio.Float16)
	t.FloatData = nil
	t.RawData = raw
	return nil
}

// SortedOps returns the operator types of a count map (such as
// FP16Report.Converted) in order.
func SortedOps(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
