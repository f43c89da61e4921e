package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// parseRatios reads a comma-separated list of rank ratios ("" is none).
func parseRatios(s string) ([]float64, error) {
	if s == "" {
		return nil, nil
	}
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 || v > 1 {
			return nil, fmt.Errorf("-anneal: bad rank ratio %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// takeTrained sets W and Bias of every replaced layer of plan to what the
// trained student's module computes: W = B·A + diag(d), Bias = the up
// projection's bias, so that the next stage factorizes the trained weights
// at its own rank.
func takeTrained(student *onnxpb.ModelProto, plan *convert.Plan) error {
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range student.GetGraph().GetInitializer() {
		inits[t.GetName()] = t
	}
	get := func(name string) ([]float32, error) {
		t := inits[name]
		if t == nil {
			return nil, nil
		}
		return onnxio.Float32s(t)
	}
	for i := range plan.Layers {
		l := &plan.Layers[i]
		if !l.Replace {
			continue
		}
		a, err := get(l.Name + "/lpr_a.weight")
		if err != nil {
			return err
		}
		b, err := get(l.Name + "/lpr_b.weight")
		if err != nil {
			return err
		}
		if a == nil || b == nil {
			continue // kept in the previous stage: start from the original
		}
		d, err := get(l.Name + "/lpr_res.weight")
		if err != nil {
			return err
		}
		bias, err := get(l.Name + "/lpr_b.bias")
		if err != nil {
			return err
		}
		out, in := l.Channels, l.InputChannels()
		r := len(a) / in
		w := make([]float32, out*in)
		for o := 0; o < out; o++ {
			for k := 0; k < r; k++ {
				bk := b[o*r+k]
				for j := 0; j < in; j++ {
					w[o*in+j] += bk * a[k*in+j]
				}
			}
		}
		if d != nil {
			for o := 0; o < out; o++ {
				w[o*in+o] += d[o]
			}
		}
		l.W = w
		if bias != nil {
			l.Bias = bias
		} else {
			l.Bias = make([]float32, out)
		}
	}
	return nil
}
