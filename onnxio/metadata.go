package onnxio

import (
	"encoding/json"
	"fmt"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// SetMetadata sets the model-level metadata_props entry key to value: it
// replaces the value of the first entry with that key (removing any later
// duplicates) or appends a new entry, keeping the order of the others.
func SetMetadata(m *onnxpb.ModelProto, key, value string) {
	found := false
	kept := m.MetadataProps[:0]
	for _, kv := range m.MetadataProps {
		if kv.GetKey() != key {
			kept = append(kept, kv)
			continue
		}
		if !found {
			kv.Value = value
			kept = append(kept, kv)
			found = true
		}
	}
	for i := len(kept); i < len(m.MetadataProps); i++ {
		m.MetadataProps[i] = nil
	}
	m.MetadataProps = kept
	if !found {
		m.MetadataProps = append(m.MetadataProps, &onnxpb.StringStringEntryProto{Key: key, Value: value})
	}
}

// Metadata returns the value of the model-level metadata_props entry key
// and whether it is present.
func Metadata(m *onnxpb.ModelProto, key string) (string, bool) {
	for _, kv := range m.GetMetadataProps() {
		if kv.GetKey() == key {
			return kv.GetValue(), true
		}
	}
	return "", false
}

// MetadataJSON decodes the model-level metadata_props entry key as JSON
// into a new T. It returns nil, false, nil when the entry is absent, and an
// error naming key when the entry is not valid JSON for T.
func MetadataJSON[T any](m *onnxpb.ModelProto, key string) (*T, bool, error) {
	s, ok := Metadata(m, key)
	if !ok {
		return nil, false, nil
	}
	v := new(T)
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return nil, true, fmt.Errorf("metadata %q is not valid JSON: %w", key, err)
	}
	return v, true, nil
}

// SetMetadataJSON sets the metadata_props entry key (as SetMetadata) to
// the JSON encoding of v.
func SetMetadataJSON(m *onnxpb.ModelProto, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("metadata %q: %w", key, err)
	}
	SetMetadata(m, key, string(b))
	return nil
}
