package quantize

import (
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// MetadataKey is the metadata_props key under which ToFloat16, ToInt8 and
// Int8 record what they did, as JSON (see Metadata).
const MetadataKey = "lprconv.quantize"

// Metadata is the JSON recorded under MetadataKey.
type Metadata struct {
	// Precision is "fp16" or "int8".
	Precision string `json:"precision"`
	// KeepFloat32 lists the operator types left in float32 (fp16).
	KeepFloat32 []string `json:"keep_float32,omitempty"`
	// Activations is "uint8" or "int8"; Method, Percentile and Samples
	// describe the calibration when Int8 ran it (int8).
	Activations string  `json:"activations,omitempty"`
	Method      string  `json:"method,omitempty"`
	Percentile  float64 `json:"percentile,omitempty"`
	Samples     int     `json:"samples,omitempty"`
}

// ReadMetadata returns the record a quantization left in m, if any.
func ReadMetadata(m *onnxpb.ModelProto) (*Metadata, bool, error) {
	return onnxio.MetadataJSON[Metadata](m, MetadataKey)
}

func writeMetadata(m *onnxpb.ModelProto, md Metadata) error {
	return onnxio.SetMetadataJSON(m, MetadataKey, md)
}
