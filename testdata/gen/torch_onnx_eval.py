"""A small ONNX graph interpreter built on torch operations, covering only the
operators that the fixture exports use. The fixture scripts run every exported
file through it and compare with the PyTorch model, so that a broken export is
caught at generation time (onnx 1.12 has no reference evaluator and Debian has
no onnxruntime for Python).
"""

import numpy as np
import torch
import torch.nn.functional as F
from onnx import numpy_helper


def _attrs(node):
    out = {}
    for a in node.attribute:
        if a.type == a.INT:
            out[a.name] = a.i
        elif a.type == a.FLOAT:
            out[a.name] = a.f
        elif a.type == a.INTS:
            out[a.name] = list(a.ints)
        elif a.type == a.TENSOR:
            out[a.name] = torch.from_numpy(numpy_helper.to_array(a.t).copy())
    return out


def _pads2d(at):
    p = at.get("pads", [0, 0, 0, 0])
    if p[0] != p[2] or p[1] != p[3]:
        raise ValueError("asymmetric pads not supported: %s" % p)
    return p[0], p[1]


def _ints(t):
    return [int(v) for v in t.reshape(-1).tolist()]


def run(model, feeds):
    """Evaluate ONNX `model` (a ModelProto) on `feeds` (name -> torch tensor)
    and return the graph outputs as a list of tensors."""
    env = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
           for i in model.graph.initializer}
    env.update(feeds)
    for n in model.graph.node:
        x = [env[i] if i else None for i in n.input]
        at = _attrs(n)
        op = n.op_type
        if op == "Conv":
            y = F.conv2d(x[0], x[1], x[2] if len(x) > 2 else None,
                         stride=at.get("strides", [1, 1]), padding=_pads2d(at),
                         dilation=at.get("dilations", [1, 1]),
                         groups=at.get("group", 1))
        elif op == "BatchNormalization":
            y = F.batch_norm(x[0], x[3], x[4], x[1], x[2], training=False,
                             eps=at.get("epsilon", 1e-5))
        elif op == "Relu":
            y = F.relu(x[0])
        elif op == "Clip":
            lo = at.get("min", x[1] if len(x) > 1 and x[1] is not None else None)
            hi = at.get("max", x[2] if len(x) > 2 and x[2] is not None else None)
            y = torch.clamp(x[0], None if lo is None else float(lo),
                            None if hi is None else float(hi))
        elif op == "HardSigmoid":
            y = torch.clamp(at.get("alpha", 0.2) * x[0] + at.get("beta", 0.5), 0, 1)
        elif op == "HardSwish":
            y = x[0] * torch.clamp(x[0] / 6 + 0.5, 0, 1)
        elif op == "MaxPool":
            y = F.max_pool2d(x[0], at["kernel_shape"], at.get("strides", 1),
                             _pads2d(at))
        elif op == "GlobalAveragePool":
            y = x[0].mean(dim=(2, 3), keepdim=True)
        elif op == "ReduceMean":
            y = x[0].mean(dim=at["axes"], keepdim=bool(at.get("keepdims", 1)))
        elif op == "Flatten":
            y = x[0].flatten(at.get("axis", 1))
        elif op == "Gemm":
            a = x[0].t() if at.get("transA", 0) else x[0]
            b = x[1].t() if at.get("transB", 0) else x[1]
            y = at.get("alpha", 1.0) * (a @ b)
            if len(x) > 2 and x[2] is not None:
                y = y + at.get("beta", 1.0) * x[2]
        elif op == "MatMul":
            y = x[0] @ x[1]
        elif op in ("Add", "Sub", "Mul"):
            y = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul}[op](x[0], x[1])
        elif op == "Div":
            if x[0].dtype.is_floating_point:
                y = x[0] / x[1]
            else:
                y = torch.div(x[0], x[1], rounding_mode="trunc")
        elif op == "Constant":
            y = at["value"]
        elif op == "Identity":
            y = x[0]
        elif op == "Shape":
            y = torch.tensor(list(x[0].shape), dtype=torch.int64)
        elif op == "Gather":
            y = torch.index_select(x[0], at.get("axis", 0), x[1].reshape(-1))
            y = y.reshape(x[0].shape[:at.get("axis", 0)] + x[1].shape
                          + x[0].shape[at.get("axis", 0) + 1:])
        elif op == "Cast":
            to = {1: torch.float32, 6: torch.int32, 7: torch.int64,
                  11: torch.float64}[at["to"]]
            y = x[0].to(to)
        elif op == "Unsqueeze":
            axes = at["axes"] if "axes" in at else _ints(x[1])
            y = x[0]
            for a in sorted(a % (y.dim() + len(axes)) for a in axes):
                y = y.unsqueeze(a)
        elif op == "Squeeze":
            axes = at["axes"] if "axes" in at else _ints(x[1])
            y = x[0]
            for a in sorted((a % y.dim() for a in axes), reverse=True):
                y = y.squeeze(a)
        elif op == "Concat":
            y = torch.cat(x, dim=at["axis"])
        elif op == "Reshape":
            shape = _ints(x[1])
            shape = [x[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
            y = x[0].reshape(shape)
        elif op == "Transpose":
            y = x[0].permute(at["perm"])
        elif op == "Slice":
            if "starts" in at:
                starts, ends = at["starts"], at["ends"]
                axes = at.get("axes", list(range(len(starts))))
                steps = [1] * len(starts)
            else:
                starts, ends = _ints(x[1]), _ints(x[2])
                axes = _ints(x[3]) if len(x) > 3 and x[3] is not None \
                    else list(range(len(starts)))
                steps = _ints(x[4]) if len(x) > 4 and x[4] is not None \
                    else [1] * len(starts)
            idx = [slice(None)] * x[0].dim()
            for s, e, a, st in zip(starts, ends, axes, steps):
                if st != 1:
                    raise ValueError("Slice step %d not supported" % st)
                dim = x[0].shape[a]
                s = max(0, min(dim, s + dim if s < 0 else s))
                e = max(0, min(dim, e + dim if e < 0 else e))
                idx[a] = slice(s, e)
            y = x[0][tuple(idx)]
        elif op == "Split":
            axis = at.get("axis", 0)
            split = at.get("split") or (_ints(x[1]) if len(x) > 1 else None)
            if split is None:
                k = len(n.output)
                split = [x[0].shape[axis] // k] * k
            y = list(torch.split(x[0], split, dim=axis))
        else:
            raise ValueError("operator %s not supported" % op)
        if isinstance(y, list):
            for name, v in zip(n.output, y):
                env[name] = v
        else:
            env[n.output[0]] = y
    return [env[o.name] for o in model.graph.output]


def max_abs_diff(model, torch_model, x):
    """Largest |ONNX - PyTorch| output difference on input batch `x`."""
    with torch.no_grad():
        want = torch_model(x)
        got = run(model, {model.graph.input[0].name: x.contiguous()})[0]
    if tuple(got.shape) != tuple(want.shape):
        raise ValueError("output shape %s, want %s" % (tuple(got.shape),
                                                         tuple(want.shape)))
    return float((got - want).abs().max())
