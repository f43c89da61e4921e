package report

import (
	"encoding/json"
	"fmt"
	"io"
)

// WriteJSON writes s as indented JSON with snake_case keys; missing
// optional values are null.
func WriteJSON(w io.Writer, s *Sweep) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode sweep as json: %w", err)
	}
	data = append(data, '\n')
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// ReadJSON decodes a sweep written by WriteJSON.
func ReadJSON(r io.Reader) (*Sweep, error) {
	var s Sweep
	dec := json.NewDecoder(r)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("decode sweep json: %w", err)
	}
	return &s, nil
}
