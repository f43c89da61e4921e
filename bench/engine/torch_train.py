"""PyTorch side of `go run ./bench/engine train`: a worker that rebuilds an
ONNX CNN (Conv, BatchNormalization, Relu, Clip, Add, GlobalAveragePool,
Flatten, Gemm) as a torch module with the same weights, and times training
steps (forward, cross-entropy, backward, SGD update of every weight) when
asked on stdin.

Protocol: prints "ready <torch version>" once; then for every line
"run THREADS FORMAT SECONDS" (FORMAT: channels_last or contiguous) it runs
steps for at least SECONDS and prints "ITERS ELAPSED CPU" (wall and process
CPU seconds). End of input exits.

Run by bench/engine/main.go with /usr/bin/python3 (Debian torch).
"""

import argparse
import sys
import time

import onnx
import torch
from onnx import numpy_helper
from torch import nn


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class OnnxNet(nn.Module):
    """The ONNX graph as a torch module: one submodule per weighted node,
    executed in graph order."""

    def __init__(self, model):
        super().__init__()
        g = model.graph
        self.inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in g.initializer}
        self.input = [i.name for i in g.input if i.name not in self.inits][0]
        self.output = g.output[0].name
        self.nodes = []
        self.mods = nn.ModuleDict()
        for k, n in enumerate(g.node):
            a = attrs(n)
            key = "n%d" % k
            if n.op_type == "Conv":
                w = self.inits[n.input[1]]
                kh, kw = w.shape[2], w.shape[3]
                pads = list(a.get("pads", [0, 0, 0, 0]))
                if pads[0] != pads[2] or pads[1] != pads[3]:
                    raise ValueError("asymmetric pads in %s" % n.name)
                group = a.get("group", 1)
                bias = len(n.input) > 2 and n.input[2] != ""
                conv = nn.Conv2d(w.shape[1] * group, w.shape[0], (kh, kw), tuple(a.get("strides", [1, 1])),
                                 (pads[0], pads[1]), tuple(a.get("dilations", [1, 1])), group, bias)
                with torch.no_grad():
                    conv.weight.copy_(w)
                    if bias:
                        conv.bias.copy_(self.inits[n.input[2]])
                self.mods[key] = conv
            elif n.op_type == "BatchNormalization":
                c = self.inits[n.input[1]].shape[0]
                bn = nn.BatchNorm2d(c, eps=a.get("epsilon", 1e-5))
                with torch.no_grad():
                    bn.weight.copy_(self.inits[n.input[1]])
                    bn.bias.copy_(self.inits[n.input[2]])
                    bn.running_mean.copy_(self.inits[n.input[3]])
                    bn.running_var.copy_(self.inits[n.input[4]])
                self.mods[key] = bn
            elif n.op_type == "Gemm":
                w = self.inits[n.input[1]]
                if a.get("transB", 0) != 1 or a.get("transA", 0) != 0:
                    raise ValueError("Gemm %s: only transB=1 is supported" % n.name)
                lin = nn.Linear(w.shape[1], w.shape[0], bias=len(n.input) > 2)
                with torch.no_grad():
                    lin.weight.copy_(w * a.get("alpha", 1.0))
                    if len(n.input) > 2:
                        lin.bias.copy_(self.inits[n.input[2]] * a.get("beta", 1.0))
                self.mods[key] = lin
            elif n.op_type not in ("Relu", "Clip", "Add", "GlobalAveragePool", "Flatten"):
                raise ValueError("operator %s (%s) is not supported" % (n.op_type, n.name))
            self.nodes.append((key, n.op_type, list(n.input), list(n.output), a))

    def forward(self, x):
        v = {self.input: x}
        for key, op, ins, outs, a in self.nodes:
            if key in self.mods:
                y = self.mods[key](v[ins[0]])
            elif op == "Relu":
                y = torch.relu(v[ins[0]])
            elif op == "Clip":
                lo = self.inits[ins[1]].item() if len(ins) > 1 and ins[1] else a.get("min", float("-inf"))
                hi = self.inits[ins[2]].item() if len(ins) > 2 and ins[2] else a.get("max", float("inf"))
                y = torch.clamp(v[ins[0]], lo, hi)
            elif op == "Add":
                b = v[ins[1]] if ins[1] in v else self.inits[ins[1]]
                y = v[ins[0]] + b
            elif op == "GlobalAveragePool":
                y = torch.mean(v[ins[0]], dim=(2, 3), keepdim=True)
            elif op == "Flatten":
                y = torch.flatten(v[ins[0]], a.get("axis", 1))
            v[outs[0]] = y
        return v[self.output]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    model = onnx.load(args.model)
    dims = [d.dim_value for d in [i for i in model.graph.input if i.name not in
                                  {t.name for t in model.graph.initializer}][0].type.tensor_type.shape.dim]
    shape = [args.batch] + [int(d) for d in dims[1:]]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    nets = {}
    for fmt in ("channels_last", "contiguous"):
        net = OnnxNet(model)
        net.train()
        mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        net = net.to(memory_format=mf)
        opt = torch.optim.SGD(net.parameters(), lr=args.lr)
        xin = x.contiguous(memory_format=mf)
        with torch.no_grad():
            classes = net(xin).shape[1]
        y = torch.randint(0, classes, (args.batch,), generator=gen)
        nets[fmt] = (net, opt, xin, y)

    def step(fmt):
        net, opt, xin, y = nets[fmt]
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(xin), y)
        loss.backward()
        opt.step()

    for fmt in nets:  # warm up
        for _ in range(3):
            step(fmt)
    print("ready %s (%s)" % (torch.__version__, torch.backends.mkldnn.is_available() and "mkldnn" or "no mkldnn"), flush=True)
    for line in sys.stdin:
        f = line.split()
        if len(f) != 4 or f[0] != "run":
            print("0 0 0", flush=True)
            continue
        torch.set_num_threads(int(f[1]))
        fmt, secs = f[2], float(f[3])
        step(fmt)  # one untimed step after a thread change
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while True:
            step(fmt)
            n += 1
            el = time.perf_counter() - t0
            if el >= secs:
                break
        print("%d %.6f %.6f" % (n, el, time.process_time() - c0), flush=True)


if __name__ == "__main__":
    main()
