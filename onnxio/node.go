package onnxio

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// OpsetVersion returns the version of the default ONNX operator set that
// the model imports, or 0 when it imports none.
func OpsetVersion(m *onnxpb.ModelProto) int64 {
	for _, o := range m.GetOpsetImport() {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			return o.GetVersion()
		}
	}
	return 0
}

// IsDefaultDomain reports whether the node belongs to the default ONNX
// operator set.
func IsDefaultDomain(n *onnxpb.NodeProto) bool {
	return n.GetDomain() == "" || n.GetDomain() == "ai.onnx"
}

// NodeLabel names a node in messages: by its name, else by its first
// output.
func NodeLabel(n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return fmt.Sprintf("%s node %q", n.GetOpType(), n.GetName())
	}
	if len(n.GetOutput()) > 0 {
		return fmt.Sprintf("%s node with output %q", n.GetOpType(), n.GetOutput()[0])
	}
	return n.GetOpType() + " node"
}

// Attr returns the node's attribute called name, or nil.
func Attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

// AttrInt returns the integer attribute name, or def when it is absent.
func AttrInt(n *onnxpb.NodeProto, name string, def int64) int64 {
	if a := Attr(n, name); a != nil {
		return a.GetI()
	}
	return def
}

// AttrFloat returns the float attribute name, or def when it is absent.
func AttrFloat(n *onnxpb.NodeProto, name string, def float32) float32 {
	if a := Attr(n, name); a != nil {
		return a.GetF()
	}
	return def
}

// AttrInts returns the integer-list attribute name and whether it is
// present.
func AttrInts(n *onnxpb.NodeProto, name string) ([]int64, bool) {
	if a := Attr(n, name); a != nil {
		return a.GetInts(), true
	}
	return nil, false
}

// AttrString returns the string attribute name, or def when it is absent.
func AttrString(n *onnxpb.NodeProto, name, def string) string {
	if a := Attr(n, name); a != nil {
		return string(a.GetS())
	}
	return def
}

// Input returns the node's i-th input name, or "" when it is absent
// (beyond the list or left empty).
func Input(n *onnxpb.NodeProto, i int) string {
	if i < len(n.GetInput()) {
		return n.GetInput()[i]
	}
	return ""
}

// IsFloat reports whether an ONNX element type is floating point (float,
// double, float16 or bfloat16).
func IsFloat(dt int32) bool {
	switch DataType(dt) {
	case Float, Double, Float16, onnxpb.TensorProto_BFLOAT16:
		return true
	}
	return false
}
