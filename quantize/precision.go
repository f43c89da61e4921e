package quantize

import (
	"context"
	"fmt"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Precision is an export precision.
type Precision string

// The precisions lprconv exports.
const (
	FP32 Precision = "fp32"
	FP16 Precision = "fp16"
	INT8 Precision = "int8"
)

// ParsePrecision parses "fp32", "fp16" or "int8".
func ParsePrecision(s string) (Precision, error) {
	switch p := Precision(s); p {
	case FP32, FP16, INT8:
		return p, nil
	}
	return "", fmt.Errorf("unknown precision %q (want fp32, fp16 or int8)", s)
}

// Options gathers the settings of both conversions for Convert.
type Options struct {
	FP16 FP16Options
	Int8 Int8Options
}

// Report is what Convert did: FP16 or Int8 is set for those precisions.
type Report struct {
	Precision Precision   `json:"precision"`
	FP16      *FP16Report `json:"fp16,omitempty"`
	Int8      *Int8Report `json:"int8,omitempty"`
}

// Convert returns m at precision p: m itself for FP32, ToFloat16 for
// FP16, and Int8 calibrated on src for INT8 (src may be nil otherwise). It
// is the one call that compress --precision and sweep --precisions make.
func Convert(ctx context.Context, m *onnxpb.ModelProto, p Precision, src dataset.Batches, opts Options) (*onnxpb.ModelProto, *Report, error) {
	rep := &Report{Precision: p}
	var err error
	switch p {
	case FP32:
		return m, rep, nil
	case FP16:
		m, rep.FP16, err = ToFloat16(m, opts.FP16)
	case INT8:
		if src == nil {
			return nil, nil, fmt.Errorf("int8: calibration data is required")
		}
		m, rep.Int8, err = Int8(ctx, m, src, opts.Int8)
	default:
		return nil, nil, fmt.Errorf("unknown precision %q (want fp32, fp16 or int8)", p)
	}
	if err != nil {
		return nil, nil, err
	}
	return m, rep, nil
}
