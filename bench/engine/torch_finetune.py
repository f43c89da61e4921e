"""PyTorch side of bench/engine/run.sh's fine-tuning section: times the
distillation loop of `lprconv compress --data` (default LPR-only training)
in PyTorch with the same recipe, and prints one JSON line.

One step, as lprconv's fine-tuning loop runs it: the teacher's forward pass
(no autograd) and the student's forward pass on the same batch, the loss
(--match logits+modules: T^2 KL(teacher || student) at temperature T on the
logits, plus the normalized squared error sum (s - t)^2 / sum t^2 of every
LPR module's output, weight 1 in total; --match logits: the KD term only),
the backward pass to the LPR tensors (the initializers of nodes named
*/lpr_*; everything else is frozen), and an Adam step (beta 0.9/0.999, eps
1e-8) at the warm-up + cosine learning rate.

The ONNX graphs run in torch_onnx_eval's interpreter (testdata/gen), one
torch call per node, as eager PyTorch code would. Shape arithmetic (Shape,
Gather, Unsqueeze, Concat of shapes, Constant: every node that does not read
image data) is evaluated once before timing, as a hand-written module would
have it as Python integers, so the timed loop runs only the nodes that touch
activations. Inputs are random normal batches prepared before timing (no
data loading); the first --warmup steps are not timed. Activations and 4-D
weights are channels_last with --format channels_last (contiguous NCHW
otherwise).

    /usr/bin/python3 bench/engine/torch_finetune.py --teacher T.onnx \
        --student S.onnx [--batch 64] [--steps 40] [--threads 2] \
        [--match logits+modules] [--format channels_last]

Prints {"images_per_s": ..., "images_per_cpu_s": ..., "steps": ...,
"threads": ..., "torch": ...}.
"""

import argparse
import copy
import importlib.util
import json
import os
import sys
import time

import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "testdata", "gen"))
import torch_onnx_eval  # noqa: E402

# the recipe's pieces (LPR tensors, learning-rate schedule) come from
# bench/finetune/torch_distill.py, PyTorch's implementation of the recipe
_spec = importlib.util.spec_from_file_location(
    "finetune_torch_distill", os.path.join(HERE, "..", "finetune", "torch_distill.py"))
recipe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recipe)


def cache_attrs():
    """Make torch_onnx_eval parse each node's attributes once, not on every
    call, as a module built from the graph would (keyed by the node's name,
    op and first output: a teacher's layer and the LPR node that replaces it
    share an output name, not a node name)."""
    parse, cache = torch_onnx_eval._attrs, {}

    def cached(node):
        key = (node.name, node.op_type, node.output[0])
        if key not in cache:
            cache[key] = parse(node)
        return cache[key]
    torch_onnx_eval._attrs = cached


def module_outputs(model):
    """Outputs of the LPR modules (finetune.ModuleOutputs): outputs of nodes
    named <layer>/lpr_* that no LPR node of the same layer reads."""
    outs, read_by = [], {}
    for n in model.graph.node:
        if "/lpr_" not in n.name:
            continue
        layer = n.name[:n.name.index("/lpr_")]
        for i in n.input:
            read_by.setdefault(i, set()).add(layer)
        for o in n.output:
            outs.append((o, layer))
    return [o for o, layer in outs if layer not in read_by.get(o, set())]


class Graph:
    """An ONNX model with its shape arithmetic folded and its initializers
    held as torch tensors, some trainable; calling it returns the logits
    and the values named in observe."""

    def __init__(self, model, x, observe=(), trainable=(), channels_last=True):
        inits = {}
        for t in model.graph.initializer:
            v = torch.from_numpy(numpy_helper.to_array(t).copy())
            if v.dim() == 4 and channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
            inits[t.name] = v
        self.input = [i.name for i in model.graph.input if i.name not in inits][0]
        # static: values that do not depend on image data
        static = set(inits)
        static_nodes, is_static = [], set()
        for k, n in enumerate(model.graph.node):
            if n.op_type == "Shape" or all(i == "" or i in static for i in n.input):
                static_nodes.append(n)
                is_static.add(k)
                static.update(o for o in n.output if o)
        probe = copy.deepcopy(model)
        del probe.graph.initializer[:]
        del probe.graph.output[:]
        for n in static_nodes:
            for o in n.output:
                if o:
                    probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(o))
        with torch.no_grad():
            vals = torch_onnx_eval.run(probe, dict(inits, **{self.input: x})) if static_nodes else []
        keep = {o.name: v for o, v in zip(probe.graph.output, vals)}
        self.model = copy.deepcopy(model)
        del self.model.graph.initializer[:]
        kept = [n for k, n in enumerate(model.graph.node) if k not in is_static]
        del self.model.graph.node[:]
        self.model.graph.node.extend(kept)
        for name in observe:
            self.model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        self.tensors = dict(inits, **keep)
        for name in trainable:
            self.tensors[name].requires_grad_(True)
        self.params = [self.tensors[n] for n in trainable]

    def __call__(self, x):
        feeds = dict(self.tensors)
        feeds[self.input] = x
        return torch_onnx_eval.run(self.model, feeds)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True)
    p.add_argument("--student", required=True, help="LPR student (lprconv compress output)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=40, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--match", default="logits+modules", choices=["logits+modules", "logits"])
    p.add_argument("--format", default="channels_last", choices=["channels_last", "contiguous"])
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--size", type=int, default=32, help="image height and width")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    cache_attrs()
    cl = a.format == "channels_last"
    fmt = torch.channels_last if cl else torch.contiguous_format
    batches = [torch.randn(a.batch, 3, a.size, a.size).contiguous(memory_format=fmt) for _ in range(4)]
    teacher_proto, student_proto = onnx.load(a.teacher), onnx.load(a.student)
    names = recipe.lpr_tensors(student_proto)
    mods = module_outputs(student_proto) if a.match == "logits+modules" else []
    teacher = Graph(teacher_proto, batches[0], observe=mods, channels_last=cl)
    student = Graph(student_proto, batches[0], observe=mods, trainable=names, channels_last=cl)
    opt = torch.optim.Adam(student.params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    total = a.warmup + a.steps
    temp = a.temperature

    def step(k):
        x = batches[k % len(batches)]
        with torch.no_grad():
            t = teacher(x)
        s = student(x)
        loss = F.kl_div(F.log_softmax(s[0] / temp, dim=1), F.softmax(t[0] / temp, dim=1),
                        reduction="batchmean") * temp * temp
        for sv, tv in zip(s[1:], t[1:]):
            loss = loss + (sv - tv).pow(2).sum() / tv.pow(2).sum() / len(mods)
        for g in opt.param_groups:
            g["lr"] = recipe.lr_at(k, a.lr, total // 20, total)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    for k in range(a.warmup):
        step(k)
    start, cpu0 = time.perf_counter(), time.process_time()
    for k in range(a.warmup, total):
        loss = step(k)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
    print(json.dumps({"images_per_s": round(a.steps * a.batch / seconds, 1),
                      "images_per_cpu_s": round(a.steps * a.batch / cpu, 1),
                      "steps": a.steps, "batch": a.batch, "threads": a.threads, "format": a.format,
                      "match": a.match, "modules": len(mods), "trainable": len(names),
                      "final_loss": loss, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
