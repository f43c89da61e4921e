package shapeinfer

import (
	"fmt"

	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// opsetVersion returns the version of the default ONNX operator set that
// the model imports, or 0 when it imports none.
func opsetVersion(m *onnxpb.ModelProto) int64 {
	for _, o := range m.GetOpsetImport() {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			return o.GetVersion()
		}
	}
	return 0
}

// isDefaultDomain reports whether the node belongs to the default ONNX
// operator set.
func isDefaultDomain(n *onnxpb.NodeProto) bool {
	return n.GetDomain() == "" || n.GetDomain() == "ai.onnx"
}

// nodeLabel names a node in messages: by name, else by its first output.
func nodeLabel(n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return fmt.Sprintf("%s node %q", n.GetOpType(), n.GetName())
	}
	if len(n.GetOutput()) > 0 {
		return fmt.Sprintf("%s node with output %q", n.GetOpType(), n.GetOutput()[0])
	}
	return n.GetOpType() + " node"
}

// attr returns the node's attribute called name, or nil.
func attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

func attrInt(n *onnxpb.NodeProto, name string, def int64) int64 {
	if a := attr(n, name); a != nil {
		return a.GetI()
	}
	return def
}

func attrInts(n *onnxpb.NodeProto, name string) ([]int64, bool) {
	if a := attr(n, name); a != nil {
		return a.GetInts(), true
	}
	return nil, false
}

func attrString(n *onnxpb.NodeProto, name, def string) string {
	if a := attr(n, name); a != nil {
		return string(a.GetS())
	}
	return def
}

// input returns the node's i-th input name, or "" when it is absent.
func input(n *onnxpb.NodeProto, i int) string {
	if i < len(n.GetInput()) {
		return n.GetInput()[i]
	}
	return ""
}

// isFloatType reports whether an ONNX element type is floating point.
func isFloatType(dt int32) bool {
	switch onnxio.DataType(dt) {
	case onnxio.Float, onnxio.Double, onnxio.Float16, onnxpb.TensorProto_BFLOAT16:
		return true
	}
	return false
}
