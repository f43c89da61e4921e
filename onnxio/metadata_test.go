package onnxio

import (
	"strings"
	"testing"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// TestMetadataJSON round-trips a record through SetMetadataJSON and
// MetadataJSON and checks the absent and malformed entries.
func TestMetadataJSON(t *testing.T) {
	type record struct {
		Name string `json:"name"`
		Rank int    `json:"rank"`
	}
	for _, tc := range []struct {
		name  string
		value string // raw entry; "" means absent
		want  *record
		ok    bool
		err   string
	}{
		{"absent", "", nil, false, ""},
		{"valid", `{"name":"conv1","rank":7}`, &record{"conv1", 7}, true, ""},
		{"malformed", `{"name":`, nil, true, `metadata "k" is not valid JSON`},
		{"wrong type", `{"rank":"seven"}`, nil, true, `metadata "k" is not valid JSON`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &onnxpb.ModelProto{}
			if tc.value != "" {
				SetMetadata(m, "k", tc.value)
			}
			got, ok, err := MetadataJSON[record](m, "k")
			if ok != tc.ok || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("MetadataJSON = %v, %v, %v; want ok %v, error containing %q", got, ok, err, tc.ok, tc.err)
			}
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Fatalf("MetadataJSON = %+v, want %+v", got, tc.want)
			}
		})
	}
	m := &onnxpb.ModelProto{}
	SetMetadata(m, "other", "x")
	if err := SetMetadataJSON(m, "k", record{"a", 3}); err != nil {
		t.Fatal(err)
	}
	if s, _ := Metadata(m, "k"); s != `{"name":"a","rank":3}` || len(m.MetadataProps) != 2 {
		t.Fatalf("SetMetadataJSON wrote %q (%d entries)", s, len(m.MetadataProps))
	}
	if err := SetMetadataJSON(m, "k", func() {}); err == nil || !strings.Contains(err.Error(), `metadata "k"`) {
		t.Fatalf("SetMetadataJSON(func) = %v, want an error naming the key", err)
	}
}
