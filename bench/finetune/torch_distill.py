"""Distill an LPR student (written by lprconv compress) from its teacher in
PyTorch with the recipe lprconv compress uses, as the reference that
bench/finetune/run.sh compares lprconv's fine-tuning with.

The student's ONNX graph is executed by testdata/gen/torch_onnx_eval.py (a
torch interpreter of the exported operators); the LPR initializers (those of
nodes named */lpr_*) become trainable tensors and everything else stays fixed.
Recipe: Adam (beta 0.9/0.999, eps 1e-8, no weight decay), learning rate
linear warm-up over 5% of the steps then cosine decay to 0, loss T^2 KL(teacher
|| student) at temperature T (kd) or 0.5 KD + 0.5 cross-entropy (kd+ce), the
teacher run on every batch, shuffled batches with the short last batch dropped.
Data: Fashion-MNIST IDX files (28x28, zero-padded to 32x32) or a class-per-
folder tree of 32x32 gray PNGs; /255, replicated to 3 channels, mean 0.286,
std 0.353; channels_last; 2 threads.

    /usr/bin/python3 bench/finetune/torch_distill.py --teacher T.onnx \
        --student S.onnx --data DIR [--split train] --epochs E --batch B \
        --lr LR --temperature T --loss kd -o OUT.onnx

Writes the trained student to OUT.onnx and prints one JSON line with the
steps, seconds, training images/s and images per CPU-second of the
training loop.
"""

import argparse
import copy
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "testdata", "gen"))
import torch_onnx_eval  # noqa: E402

MEAN, STD, SIZE = 0.286, 0.353, 32


def read_idx(path):
    """Read a (gzip-compressed) IDX file into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_images(path, split):
    """Return (uint8 N x 32 x 32, int64 labels) from an IDX folder of both
    splits or a class-per-folder PNG tree."""
    prefix = {"train": "train", "test": "t10k"}[split]
    idx = os.path.join(path, prefix + "-images-idx3-ubyte.gz")
    if os.path.exists(idx):
        images = read_idx(idx)
        labels = read_idx(os.path.join(path, prefix + "-labels-idx1-ubyte.gz"))
    else:
        from PIL import Image
        images, labels = [], []
        for d in sorted(os.listdir(path)):
            c = int(d.split("_", 1)[0])
            for f in sorted(os.listdir(os.path.join(path, d))):
                images.append(np.array(Image.open(os.path.join(path, d, f)).convert("L"), dtype=np.uint8))
                labels.append(c)
        images, labels = np.stack(images), np.array(labels)
    h, w = images.shape[1:]
    out = np.zeros((images.shape[0], SIZE, SIZE), dtype=np.uint8)
    top, left = (SIZE - h) // 2, (SIZE - w) // 2
    out[:, top:top + h, left:left + w] = images
    return torch.from_numpy(out), torch.from_numpy(labels.astype(np.int64))


def to_input(u8):
    """uint8 N x 32 x 32 -> normalized float N x 3 x 32 x 32, channels_last."""
    x = (u8.float() / 255.0 - MEAN) / STD
    return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


class Graph:
    """An ONNX model run by torch_onnx_eval with its initializers held as
    torch tensors (4-D ones channels_last), some of them trainable."""

    def __init__(self, model, trainable=()):
        self.model = copy.deepcopy(model)
        del self.model.graph.initializer[:]
        self.input = model.graph.input[0].name
        self.tensors = {}
        for t in model.graph.initializer:
            v = torch.from_numpy(numpy_helper.to_array(t).copy())
            if v.dim() == 4:
                v = v.contiguous(memory_format=torch.channels_last)
            if t.name in trainable:
                v.requires_grad_(True)
            self.tensors[t.name] = v
        self.params = [self.tensors[n] for n in trainable]

    def __call__(self, x):
        feeds = dict(self.tensors)
        feeds[self.input] = x
        return torch_onnx_eval.run(self.model, feeds)[0]


def lpr_tensors(model):
    """Float initializers of the nodes whose names contain /lpr_, in order."""
    inits = {t.name: t for t in model.graph.initializer}
    names = []
    for n in model.graph.node:
        if "/lpr_" not in n.name:
            continue
        for i in n.input:
            t = inits.get(i)
            if t is not None and i not in names and t.data_type == onnx.TensorProto.FLOAT and len(t.dims) > 0:
                names.append(i)
    return names


def lr_at(step, peak, warmup, total):
    """Linear warm-up to peak over warmup steps, then cosine decay to 0."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if total <= warmup:
        return peak
    frac = min(max((step - warmup) / (total - warmup), 0.0), 1.0)
    return peak * 0.5 * (1 + math.cos(math.pi * frac))


def loss_fn(s, t, labels, kind, temp):
    kd = F.kl_div(F.log_softmax(s / temp, dim=1), F.softmax(t / temp, dim=1),
                  reduction="batchmean") * temp * temp
    if kind == "kd":
        return kd
    if kind == "kd+ce":
        return 0.5 * kd + 0.5 * F.cross_entropy(s, labels)
    raise ValueError("unknown loss %s" % kind)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True)
    p.add_argument("--student", required=True, help="LPR student before fine-tuning")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--loss", default="kd")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("-o", "--output", required=True)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    teacher_proto = onnx.load(a.teacher)
    student_proto = onnx.load(a.student)
    names = lpr_tensors(student_proto)
    teacher = Graph(teacher_proto)
    student = Graph(student_proto, trainable=names)
    images, labels = load_images(a.data, a.split)
    n = images.shape[0]
    per_epoch = n // a.batch
    total = a.epochs * per_epoch
    warmup = total // 20
    opt = torch.optim.Adam(student.params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(a.seed)
    step = 0
    start, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(a.epochs):
        order = torch.randperm(n, generator=gen)
        for b in range(per_epoch):
            idx = order[b * a.batch:(b + 1) * a.batch]
            x, y = to_input(images[idx]), labels[idx]
            with torch.no_grad():
                t = teacher(x)
            loss = loss_fn(student(x), t, y, a.loss, a.temperature)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, a.lr, warmup, total)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0

    out = copy.deepcopy(student_proto)
    for t in out.graph.initializer:
        if t.name in student.tensors and t.name in names:
            v = student.tensors[t.name].detach().contiguous().numpy()
            t.CopyFrom(numpy_helper.from_array(v.astype(np.float32), t.name))
    onnx.save(out, a.output)
    print(json.dumps({"steps": step, "train_images": n, "seconds": round(seconds, 2),
                      "images_per_s": round(step * a.batch / seconds, 1),
                      "cpu_seconds": round(cpu, 2), "images_per_cpu_s": round(step * a.batch / cpu, 1),
                      "final_loss": float(loss), "trainable": len(names),
                      "trainable_params": sum(v.numel() for v in student.params)}))


if __name__ == "__main__":
    main()
