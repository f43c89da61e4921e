package shapeinfer

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Reshape returns the shape that Reshape gives a tensor of shape in for
// the target shape: a 0 copies the input dim at that position (unless
// allowZero, when it is a real 0), one -1 takes the size that keeps the
// element count, and the element counts must agree.
func Reshape(in, target []int64, allowZero bool) ([]int64, error) {
	out := make([]int64, len(target))
	infer := -1
	known := int64(1)
	for i, d := range target {
		switch {
		case d == -1:
			if infer >= 0 {
				return nil, fmt.Errorf("target %v has more than one -1", target)
			}
			infer = i
			continue
		case d == 0 && !allowZero:
			if i >= len(in) {
				return nil, fmt.Errorf("target %v copies dim %d of %v, which does not exist", target, i, in)
			}
			out[i] = in[i]
		case d < 0:
			return nil, fmt.Errorf("target %v has a negative dim %d", target, d)
		default:
			out[i] = d
		}
		known *= out[i]
	}
	total := Size(in)
	if infer >= 0 {
		if known == 0 || total%known != 0 {
			return nil, fmt.Errorf("cannot reshape %v to %v", in, target)
		}
		out[infer] = total / known
	} else if known != total {
		return nil, fmt.Errorf("cannot reshape %v (%d elements) to %v", in, total, target)
	}
	return out, nil
}

// Flatten returns Flatten's 2-D shape [d_0*...*d_{a-1}, d_a*...*d_{r-1}]
// for an axis a in [-r, r] (negative counts from the back).
func Flatten(in []int64, axis int64) ([]int64, error) {
	r := int64(len(in))
	if axis < -r || axis > r {
		return nil, fmt.Errorf("axis %d is out of range [-%d, %d]", axis, r, r)
	}
	if axis < 0 {
		axis += r
	}
	return []int64{Size(in[:axis]), Size(in[axis:])}, nil
}

// Squeeze removes the listed axes, each of which must have size 1; when
// axes is nil (not given) it removes every dim of size 1.
func Squeeze(in, axes []int64) ([]int64, error) {
	r := len(in)
	drop := make([]bool, r)
	if axes == nil {
		for i, d := range in {
			drop[i] = d == 1
		}
	}
	norm, err := NormAxes(axes, r)
	if err != nil {
		return nil, err
	}
	for _, ax := range norm {
		if in[ax] != 1 {
			return nil, fmt.Errorf("cannot squeeze axis %d of shape %v (size %d)", ax, in, in[ax])
		}
		drop[ax] = true
	}
	out := []int64{}
	for i, d := range in {
		if !drop[i] {
			out = append(out, d)
		}
	}
	return out, nil
}

// Unsqueeze inserts dims of size 1 at the listed axes of the output,
// whose rank is len(in)+len(axes).
func Unsqueeze(in, axes []int64) ([]int64, error) {
	r := len(in) + len(axes)
	norm, err := NormAxes(axes, r)
	if err != nil {
		return nil, err
	}
	ins := make([]bool, r)
	for _, ax := range norm {
		ins[ax] = true
	}
	out := make([]int64, 0, r)
	j := 0
	for i := 0; i < r; i++ {
		if ins[i] {
			out = append(out, 1)
		} else {
			out = append(out, in[j])
			j++
		}
	}
	return out, nil
}

// Transpose returns the output shape out_i = in_{perm_i} and the
// permutation; a nil perm reverses the dims. perm must be a permutation of
// [0, rank).
func Transpose(in, perm []int64) ([]int64, []int, error) {
	r := len(in)
	if perm == nil {
		for i := r - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	if len(perm) != r {
		return nil, nil, fmt.Errorf("perm %v does not fit rank %d", perm, r)
	}
	out := make([]int64, r)
	p := make([]int, r)
	seen := make([]bool, r)
	for i, a := range perm {
		if a < 0 || a >= int64(r) || seen[a] {
			return nil, nil, fmt.Errorf("perm %v is not a permutation of [0, %d)", perm, r)
		}
		seen[a] = true
		out[i], p[i] = in[a], int(a)
	}
	return out, p, nil
}

func (inf *inferer) reshape(n *onnxpb.NodeProto) error {
	return inf.apply(n, true, func(x *Value) ([]int64, error) {
		target, err := inf.attrOrConstInts(n, 5, "shape", 1)
		if err != nil {
			return nil, err
		}
		return Reshape(x.Shape, target, onnxio.AttrInt(n, "allowzero", 0) != 0)
	})
}

func (inf *inferer) flatten(n *onnxpb.NodeProto) error {
	return inf.apply(n, true, func(x *Value) ([]int64, error) {
		return Flatten(x.Shape, onnxio.AttrInt(n, "axis", 1))
	})
}

func (inf *inferer) squeeze(n *onnxpb.NodeProto) error {
	return inf.apply(n, true, func(x *Value) ([]int64, error) {
		axes, ok, err := inf.axesInput(n, "axes", 1)
		if err != nil {
			return nil, err
		}
		if ok && axes == nil {
			axes = []int64{} // given but empty: nothing to squeeze
		}
		return Squeeze(x.Shape, axes)
	})
}

func (inf *inferer) unsqueeze(n *onnxpb.NodeProto) error {
	return inf.apply(n, true, func(x *Value) ([]int64, error) {
		axes, ok, err := inf.axesInput(n, "axes", 1)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("axes are missing")
		}
		return Unsqueeze(x.Shape, axes)
	})
}

func (inf *inferer) transpose(n *onnxpb.NodeProto) error {
	return inf.apply(n, false, func(x *Value) ([]int64, error) {
		perm, _ := onnxio.AttrInts(n, "perm")
		out, _, err := Transpose(x.Shape, perm)
		return out, err
	})
}
