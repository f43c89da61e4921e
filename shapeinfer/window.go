package shapeinfer

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Window is the geometry of a convolution or pooling window over the
// spatial axes of its input: per axis the kernel size, stride, dilation,
// the effective pads before and after (auto_pad resolved), and the output
// size.
type Window struct {
	Kernel, Strides, Dilations []int64
	PadBegin, PadEnd           []int64
	Out                        []int64
}

// NewWindow reads the strides, dilations, pads and auto_pad attributes of
// a Conv or pooling node n for spatial input sizes in and the given kernel
// and computes the output sizes. With effective kernel e = (k-1)*dil + 1
// and span = in + padBegin + padEnd - e (which must be >= 0), the output is
// floor(span/stride) + 1, or with ceil rounding up, as long as the last
// window starts inside the input or its leading pad. SAME_UPPER and
// SAME_LOWER pad to out = ceil(in/stride), putting the odd pad at the end
// or the beginning; VALID pads nothing. Strides and dilations must be
// positive and pads non-negative.
func NewWindow(n *onnxpb.NodeProto, in, kernel []int64, ceil bool) (Window, error) {
	k := len(in)
	w := Window{Kernel: kernel, PadBegin: make([]int64, k), PadEnd: make([]int64, k), Out: make([]int64, k)}
	if len(kernel) != k {
		return w, fmt.Errorf("kernel %v does not fit %d spatial dims", kernel, k)
	}
	for _, v := range kernel {
		if v < 1 {
			return w, fmt.Errorf("kernel %v must be positive", kernel)
		}
	}
	get := func(name string) ([]int64, error) {
		v, ok := onnxio.AttrInts(n, name)
		if !ok {
			return ones(k), nil
		}
		if len(v) != k {
			return nil, fmt.Errorf("attribute %s has %d values; want %d", name, len(v), k)
		}
		for _, x := range v {
			if x < 1 {
				return nil, fmt.Errorf("attribute %s = %v: values must be >= 1", name, v)
			}
		}
		return v, nil
	}
	var err error
	if w.Strides, err = get("strides"); err != nil {
		return w, err
	}
	if w.Dilations, err = get("dilations"); err != nil {
		return w, err
	}
	autoPad := onnxio.AttrString(n, "auto_pad", "NOTSET")
	switch autoPad {
	case "NOTSET", "":
		if pads, ok := onnxio.AttrInts(n, "pads"); ok {
			if len(pads) != 2*k {
				return w, fmt.Errorf("attribute pads has %d values; want %d", len(pads), 2*k)
			}
			for i := 0; i < k; i++ {
				w.PadBegin[i], w.PadEnd[i] = pads[i], pads[i+k]
				if pads[i] < 0 || pads[i+k] < 0 {
					return w, fmt.Errorf("negative pads %v", pads)
				}
			}
		}
	case "VALID":
	case "SAME_UPPER", "SAME_LOWER":
		for i := 0; i < k; i++ {
			o := (in[i] + w.Strides[i] - 1) / w.Strides[i]
			total := max(0, (o-1)*w.Strides[i]+(kernel[i]-1)*w.Dilations[i]+1-in[i])
			if autoPad == "SAME_UPPER" {
				w.PadBegin[i] = total / 2
			} else {
				w.PadBegin[i] = total - total/2
			}
			w.PadEnd[i] = total - w.PadBegin[i]
		}
	default:
		return w, fmt.Errorf("auto_pad %q is not supported", autoPad)
	}
	for i := 0; i < k; i++ {
		span := in[i] + w.PadBegin[i] + w.PadEnd[i] - (kernel[i]-1)*w.Dilations[i] - 1
		if span < 0 {
			return w, fmt.Errorf("window %v (dilations %v) is larger than the padded input %v", kernel, w.Dilations, in)
		}
		o := span/w.Strides[i] + 1
		if ceil && span%w.Strides[i] != 0 {
			o++
			if (o-1)*w.Strides[i] >= in[i]+w.PadBegin[i] {
				o--
			}
		}
		w.Out[i] = o
	}
	return w, nil
}

func (inf *inferer) conv(n *onnxpb.NodeProto) error {
	x, w := inf.in(n, 0), inf.in(n, 1)
	if x == nil || w == nil {
		return fmt.Errorf("needs inputs X and W")
	}
	if len(x.Shape) < 3 || len(w.Shape) != len(x.Shape) {
		return fmt.Errorf("input shape %v and weight shape %v do not fit a convolution", x.Shape, w.Shape)
	}
	group := onnxio.AttrInt(n, "group", 1)
	if group <= 0 || x.Shape[1]%group != 0 || w.Shape[1]*group != x.Shape[1] {
		return fmt.Errorf("input has %d channels, weight %v with group %d expects %d", x.Shape[1], w.Shape, group, w.Shape[1]*group)
	}
	kernel, ok := onnxio.AttrInts(n, "kernel_shape")
	if !ok {
		kernel = w.Shape[2:]
	}
	win, err := NewWindow(n, x.Shape[2:], kernel, false)
	if err != nil {
		return err
	}
	inf.set(n, 0, shapeOf(append([]int64{x.Shape[0], w.Shape[0]}, win.Out...), x.DType))
	return nil
}

func (inf *inferer) pool(n *onnxpb.NodeProto) error {
	x, err := inf.need(n, 0)
	if err != nil {
		return err
	}
	if len(x.Shape) < 3 {
		return fmt.Errorf("input has rank %d, want at least 3", len(x.Shape))
	}
	kernel, ok := onnxio.AttrInts(n, "kernel_shape")
	if !ok {
		return fmt.Errorf("attribute kernel_shape is missing")
	}
	win, err := NewWindow(n, x.Shape[2:], kernel, onnxio.AttrInt(n, "ceil_mode", 0) != 0)
	if err != nil {
		return err
	}
	out := shapeOf(append([]int64{x.Shape[0], x.Shape[1]}, win.Out...), x.DType)
	inf.set(n, 0, out)
	if len(n.GetOutput()) > 1 { // MaxPool indices
		inf.set(n, 1, shapeOf(append([]int64{}, out.Shape...), onnxio.Int64))
	}
	return nil
}

// GlobalPool returns the shape of a global pooling: every spatial dim
// (after N and C) becomes 1.
func GlobalPool(in []int64) ([]int64, error) {
	if len(in) < 2 {
		return nil, fmt.Errorf("input has rank %d, want at least 2", len(in))
	}
	out := append([]int64{}, in...)
	for i := 2; i < len(out); i++ {
		out[i] = 1
	}
	return out, nil
}

func (inf *inferer) globalPool(n *onnxpb.NodeProto) error {
	return inf.apply(n, false, func(x *Value) ([]int64, error) { return GlobalPool(x.Shape) })
}
