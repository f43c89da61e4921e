"""ONNX operator semantics in PyTorch, used by the modules that
`lprconv export-torch` generates (model.py, teacher.py).

Each function computes one ONNX operator as ONNX Runtime does in inference
(BatchNormalization with its stored statistics, Dropout as identity), on
float tensors that carry gradients and on the int64 tensors of shape
subgraphs (Shape, Gather, Concat, Reshape, ...). The generator resolves the
opset-dependent forms (attributes against inputs) and passes the values here.

Written by lprconv export-torch; edits are lost on the next export.
"""
import math

import numpy as np
import onnx
from onnx import numpy_helper
import torch
import torch.nn.functional as F

# ONNX TensorProto data types to torch dtypes (the ones Cast may name).
DTYPES = {
    1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16,
    6: torch.int32, 7: torch.int64, 9: torch.bool, 10: torch.float16,
    11: torch.float64, 16: torch.bfloat16,
}


def load_tensors(module, onnx_path, tensors, constants):
    """Registers the ONNX file's initializers and Constant node values on
    module.

    tensors lists (attribute, ONNX initializer name, kind) with kind "param"
    (an nn.Parameter) or "buffer" (a persistent buffer); constants lists
    (attribute, output name of a Constant node), registered as
    non-persistent buffers so that state_dict() holds the initializers only.
    """
    model = onnx.load(onnx_path)
    inits = {t.name: t for t in model.graph.initializer}
    for attr, name, kind in tensors:
        if name not in inits:
            raise KeyError("%s: no initializer %r (was the model changed after export?)" % (onnx_path, name))
        t = torch.from_numpy(np.array(numpy_helper.to_array(inits[name])))
        if kind == "param":
            module.register_parameter(attr, torch.nn.Parameter(t))
        else:
            module.register_buffer(attr, t)
    produced = {}
    for node in model.graph.node:
        if node.op_type == "Constant":
            produced[node.output[0]] = node
    for attr, name in constants:
        if name not in produced:
            raise KeyError("%s: no Constant node produces %r" % (onnx_path, name))
        module.register_buffer(attr, torch.from_numpy(constant_value(produced[name])), persistent=False)


def constant_value(node):
    """The value of a Constant node as a numpy array."""
    for a in node.attribute:
        if a.name == "value":
            return np.array(numpy_helper.to_array(a.t))
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
    raise ValueError("Constant node %r has no supported value attribute" % node.name)


def ints(v):
    """Python ints of a shape-like value: a tensor, a list or an int."""
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        return [int(i) for i in v.reshape(-1).tolist()]
    if isinstance(v, (list, tuple)):
        return [int(i) for i in v]
    return [int(v)]


def _axis(a, rank):
    return a + rank if a < 0 else a


def _pads(x, kernel, strides, dilations, pads, auto_pad):
    """ONNX pads [begin..., end...] after resolving auto_pad."""
    r = len(kernel)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for n, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            out = -(-int(n) // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - int(n))
            small, big = total // 2, total - total // 2
            if auto_pad == "SAME_UPPER":
                begin.append(small)
                end.append(big)
            else:
                begin.append(big)
                end.append(small)
        return begin + end
    if auto_pad == "VALID" or not pads:
        return [0] * (2 * r)
    return list(pads)


def _pad(x, pads, value):
    """Pads the spatial dimensions of x by ONNX pads."""
    r = len(pads) // 2
    fp = []
    for i in reversed(range(r)):
        fp += [pads[i], pads[i + r]]
    return F.pad(x, fp, value=value)


def conv(x, w, b, kernel_shape=None, strides=None, pads=None, dilations=None, group=1, auto_pad="NOTSET"):
    """Conv: y = x * w + b (cross-correlation), any padding."""
    r = w.dim() - 2
    kernel = kernel_shape or list(w.shape[2:])
    strides = strides or [1] * r
    dilations = dilations or [1] * r
    p = _pads(x, kernel, strides, dilations, pads, auto_pad)
    if p[:r] != p[r:]:
        x = _pad(x, p, 0.0)
        p = [0] * (2 * r)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[r]
    return fn(x, w, b, stride=strides, padding=p[:r], dilation=dilations, groups=group)


def batch_norm(x, scale, bias, mean, var, eps):
    """BatchNormalization in inference: (x - mean) / sqrt(var + eps) * scale + bias.

    Written out (rather than F.batch_norm) so that every input, the
    statistics included, can learn as lprconv's engine lets it.
    """
    shape = [1, -1] + [1] * (x.dim() - 2)
    k = scale * torch.rsqrt(var + eps)
    return (x - mean.reshape(shape)) * k.reshape(shape) + bias.reshape(shape)


def max_pool(x, kernel_shape, strides=None, pads=None, dilations=None, ceil_mode=0, auto_pad="NOTSET"):
    """MaxPool; padding counts as -inf."""
    r = len(kernel_shape)
    strides = strides or [1] * r
    dilations = dilations or [1] * r
    p = _pads(x, kernel_shape, strides, dilations, pads, auto_pad)
    if p[:r] != p[r:] or any(2 * q > k for q, k in zip(p[:r], kernel_shape)):
        x = _pad(x, p, -math.inf)
        p = [0] * (2 * r)
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[r]
    return fn(x, kernel_shape, strides, p[:r], dilations, ceil_mode=bool(ceil_mode))


def avg_pool(x, kernel_shape, strides=None, pads=None, ceil_mode=0, count_include_pad=0, auto_pad="NOTSET"):
    """AveragePool; the divisor counts padding only with count_include_pad.

    The window sums of the padded input are divided by those of a mask that
    is 1 on the input (and on the padding when count_include_pad is set).
    """
    r = len(kernel_shape)
    strides = strides or [1] * r
    p = _pads(x, kernel_shape, strides, [1] * r, pads, auto_pad)
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[r]
    if not any(p):
        return fn(x, kernel_shape, strides, 0, ceil_mode=bool(ceil_mode), count_include_pad=False)
    xs = fn(_pad(x, p, 0.0), kernel_shape, strides, 0, ceil_mode=bool(ceil_mode), count_include_pad=False)
    mask = _pad(torch.ones_like(x[:1, :1]), p, 1.0 if count_include_pad else 0.0)
    ms = fn(mask, kernel_shape, strides, 0, ceil_mode=bool(ceil_mode), count_include_pad=False)
    return xs / ms


def global_pool(x, use_max):
    """GlobalAveragePool or GlobalMaxPool over every spatial dimension."""
    dims = tuple(range(2, x.dim()))
    if use_max:
        return torch.amax(x, dim=dims, keepdim=True)
    return torch.mean(x, dim=dims, keepdim=True)


def hard_sigmoid(x, alpha, beta):
    """HardSigmoid: max(0, min(1, alpha * x + beta))."""
    return torch.clamp(alpha * x + beta, 0.0, 1.0)


def clip(x, lo, hi):
    """Clip: min(max(x, lo), hi); a bound of None is absent."""
    if lo is not None:
        x = torch.maximum(x, lo) if isinstance(lo, torch.Tensor) else torch.clamp(x, min=lo)
    if hi is not None:
        x = torch.minimum(x, hi) if isinstance(hi, torch.Tensor) else torch.clamp(x, max=hi)
    return x


def div(a, b):
    """Div: true division of floats, truncating division of integers."""
    if a.is_floating_point() or b.is_floating_point():
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


def legacy_broadcast(a, b, axis):
    """Aligns b with a from axis, as opsets before 7 broadcast with an axis attribute."""
    axis = _axis(axis, a.dim())
    return b.reshape([1] * axis + list(b.shape) + [1] * (a.dim() - axis - b.dim()))


def gemm(a, b, c, alpha=1.0, beta=1.0, trans_a=0, trans_b=0):
    """Gemm: alpha * A' B' + beta * C."""
    if trans_a:
        a = a.t()
    if trans_b and alpha == 1.0 and beta == 1.0 and (c is None or c.dim() <= 1):
        return F.linear(a, b, c)
    if trans_b:
        b = b.t()
    y = torch.matmul(a, b)
    if alpha != 1.0:
        y = alpha * y
    if c is not None:
        y = y + (beta * c if beta != 1.0 else c)
    return y


def softmax_2d(x, axis, log):
    """Softmax or LogSoftmax of opsets before 13: over x coerced to 2-D at axis."""
    axis = _axis(axis, x.dim())
    x2 = x.reshape(math.prod(x.shape[:axis]), -1)
    y = torch.log_softmax(x2, 1) if log else torch.softmax(x2, 1)
    return y.reshape(x.shape)


def reduce(x, axes, keepdims=1, noop_with_empty_axes=0, mean=True):
    """ReduceMean or ReduceSum over axes (all axes when empty)."""
    axes = ints(axes) or []
    if not axes:
        if noop_with_empty_axes:
            return x
        axes = list(range(x.dim()))
    axes = [_axis(a, x.dim()) for a in axes]
    if mean:
        return torch.mean(x, dim=axes, keepdim=bool(keepdims))
    return torch.sum(x, dim=axes, keepdim=bool(keepdims))


def reshape(x, shape, allowzero=0):
    """Reshape; a 0 copies the input's dimension unless allowzero is set."""
    s = ints(shape)
    if not allowzero:
        s = [int(x.shape[i]) if d == 0 else d for i, d in enumerate(s)]
    return x.reshape(s)


def flatten(x, axis):
    """Flatten to 2-D: dimensions before axis, then the rest."""
    axis = _axis(axis, x.dim())
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def squeeze(x, axes):
    """Squeeze the given axes (every axis of size 1 when None)."""
    if axes is None:
        return x.reshape([d for d in x.shape if d != 1])
    for a in sorted((_axis(a, x.dim()) for a in ints(axes)), reverse=True):
        x = x.squeeze(a)
    return x


def unsqueeze(x, axes):
    """Unsqueeze: insert size-1 axes (numbered in the output)."""
    axes = ints(axes)
    rank = x.dim() + len(axes)
    for a in sorted(_axis(a, rank) for a in axes):
        x = x.unsqueeze(a)
    return x


def transpose(x, perm):
    """Transpose by perm (reversed axes when None)."""
    if perm is None:
        perm = list(reversed(range(x.dim())))
    return x.permute(perm)


def split(x, axis, sizes, n):
    """Split into len(sizes) parts, or n equal parts (the last smaller)."""
    axis = _axis(axis, x.dim())
    if sizes is not None:
        return torch.split(x, ints(sizes), dim=axis)
    return torch.split(x, -(-int(x.shape[axis]) // n), dim=axis)


def slice(x, starts, ends, axes=None, steps=None):
    """Slice with ONNX clamping; negative steps walk backwards."""
    starts, ends = ints(starts), ints(ends)
    axes = ints(axes) if axes is not None else list(range(len(starts)))
    steps = ints(steps) if steps is not None else [1] * len(starts)
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = _axis(a, x.dim())
        n = int(x.shape[a])
        if st > 0:
            idx = [builtin_slice(None)] * x.dim()
            idx[a] = builtin_slice(s, e, st)
            x = x[tuple(idx)]
            continue
        s = min(max(s + n if s < 0 else s, 0), n - 1)
        e = min(max(e + n if e < 0 else e, -1), n - 1)
        keep = torch.tensor(list(range(s, e, st)), dtype=torch.int64, device=x.device)
        x = torch.index_select(x, a, keep)
    return x


builtin_slice = __builtins__["slice"] if isinstance(__builtins__, dict) else __builtins__.slice


def shape(x, start=0, end=None):
    """Shape as an int64 tensor (dimensions start..end)."""
    return torch.tensor(list(x.shape)[start:end], dtype=torch.int64, device=x.device)


def gather(x, idx, axis):
    """Gather along axis; negative indices count from the end."""
    axis = _axis(axis, x.dim())
    idx = idx.to(torch.int64)
    i = torch.where(idx < 0, idx + int(x.shape[axis]), idx)
    out = torch.index_select(x, axis, i.reshape(-1))
    return out.reshape(list(x.shape[:axis]) + list(idx.shape) + list(x.shape[axis + 1:]))


def cast(x, to):
    """Cast to the ONNX data type code to (floats to integers truncate)."""
    if to not in DTYPES:
        raise ValueError("Cast to ONNX data type %d is not supported" % to)
    return x.to(DTYPES[to])
