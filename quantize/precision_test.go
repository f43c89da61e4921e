package quantize

import (
	"context"
	"testing"

	"github.com/lprconv/lprconv/dataset"
)

// TestConvert checks ParsePrecision and that Convert dispatches to the
// right conversion (and records it), and refuses int8 without data.
func TestConvert(t *testing.T) {
	for _, s := range []string{"fp64", "", "INT8"} {
		if _, err := ParsePrecision(s); err == nil {
			t.Errorf("ParsePrecision(%q): no error", s)
		}
	}
	m := fixtureModel(t, "mobilenetv1.onnx", false)
	for _, c := range []struct {
		prec string
		src  dataset.Batches
		ok   bool
	}{
		{"fp32", nil, true},
		{"fp16", nil, true},
		{"int8", nil, false},
		{"int8", trainLoader(t), true},
	} {
		p, err := ParsePrecision(c.prec)
		if err != nil {
			t.Fatal(err)
		}
		q, rep, err := Convert(context.Background(), m, p, c.src, Options{Int8: Int8Options{Calibrate: CalibrateOptions{Samples: 32}}})
		if (err == nil) != c.ok {
			t.Fatalf("%s: error %v", c.prec, err)
		}
		if err != nil {
			continue
		}
		md, found, err := ReadMetadata(q)
		switch {
		case err != nil:
			t.Fatal(err)
		case p == FP32:
			if q != m || found || rep.FP16 != nil || rep.Int8 != nil {
				t.Errorf("fp32: changed the model or reported %+v", rep)
			}
		case !found || md.Precision != c.prec || rep.Precision != p || (p == FP16) != (rep.FP16 != nil) || (p == INT8) != (rep.Int8 != nil):
			t.Errorf("%s: metadata %+v, report %+v", c.prec, md, rep)
		}
	}
}
