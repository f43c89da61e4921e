package torchexport

import (
	"strconv"
	"strings"
)

// Mangle turns an ONNX name into a Python identifier: prefix followed by
// the name with every character outside [A-Za-z0-9_] replaced by '_'
// ("features.0.weight" with prefix "w_" becomes "w_features_0_weight").
// torch attribute names may not contain '.', and the prefix keeps them
// clear of Python keywords and nn.Module's own attributes. Mangling is not
// one-to-one, so a Namer adds a numeric suffix on collision and the map
// from identifier to ONNX name is stored with the generated module.
func Mangle(prefix, name string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Namer hands out unique Python identifiers for ONNX names.
type Namer struct {
	used map[string]bool
	// byONNX remembers the identifier of every ONNX name given so far.
	byONNX map[string]string
}

// NewNamer returns a Namer with the identifiers in reserved already taken.
func NewNamer(reserved ...string) *Namer {
	n := &Namer{used: map[string]bool{}, byONNX: map[string]string{}}
	for _, r := range reserved {
		n.used[r] = true
	}
	return n
}

// Name returns the identifier of the ONNX name: Mangle(prefix, name), with
// "_2", "_3", ... appended when that identifier is already taken by another
// name. The same ONNX name always gets the same identifier.
func (n *Namer) Name(prefix, name string) string {
	key := prefix + "\x00" + name
	if id, ok := n.byONNX[key]; ok {
		return id
	}
	base := Mangle(prefix, name)
	id := base
	for i := 2; n.used[id]; i++ {
		id = base + "_" + strconv.Itoa(i)
	}
	n.used[id] = true
	n.byONNX[key] = id
	return id
}
