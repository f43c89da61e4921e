#!/usr/bin/python3
"""Train the Fashion-MNIST fixture models of lprconv and export them to ONNX.

Run with Debian's interpreter (torch 1.13, torchvision 0.14, onnx 1.12):

    /usr/bin/python3 testdata/gen/train_fixtures.py            # train + export
    /usr/bin/python3 testdata/gen/train_fixtures.py --export-only

Inputs are Fashion-MNIST 28x28 gray images, zero-padded to 32x32, replicated to
three channels and normalized with mean 0.2860 and std 0.3530 (the padding is
applied before normalization). Checkpoints (state_dict) are kept outside the
repository in --cache so that the export can be rerun without retraining.
"""

import argparse
import gzip
import json
import os
import sys
import time
from collections import Counter

import numpy as np
import onnx
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mobilenetv1 import MobileNetV1  # noqa: E402
from torch_onnx_eval import max_abs_diff  # noqa: E402

DATA_DIR = "/usr/share/datasets/fashion-mnist"
MEAN = 0.2860
STD = 0.3530
SIZE = 32
CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal",
           "shirt", "sneaker", "bag", "ankle_boot"]
TEST_PER_CLASS = 50
TRAIN_PER_CLASS = 100
HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.dirname(HERE)


def build_model(name):
    """Return a freshly initialized fixture model called `name`."""
    if name == "mobilenetv1":
        return MobileNetV1(width=0.25, num_classes=10)
    if name == "shufflenetv2":
        return torchvision.models.shufflenet_v2_x0_5(num_classes=10)
    raise ValueError("unknown model " + name)


def read_idx(path):
    """Read a gzip-compressed IDX file into a numpy array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(prefix):
    """Return (uint8 images N x 32 x 32 zero-padded, int64 labels)."""
    images = read_idx(os.path.join(DATA_DIR, prefix + "-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DATA_DIR, prefix + "-labels-idx1-ubyte.gz"))
    pad = (SIZE - images.shape[1]) // 2
    padded = np.zeros((images.shape[0], SIZE, SIZE), dtype=np.uint8)
    padded[:, pad:pad + images.shape[1], pad:pad + images.shape[2]] = images
    return torch.from_numpy(padded), torch.from_numpy(labels.astype(np.int64))


def to_input(u8):
    """uint8 N x 32 x 32 -> normalized float N x 3 x 32 x 32 (channels_last)."""
    x = (u8.float() / 255.0 - MEAN) / STD
    x = x.unsqueeze(1).expand(-1, 3, -1, -1)
    return x.contiguous(memory_format=torch.channels_last)


def augment(u8, gen, pad=2):
    """Random crop with zero padding `pad` and random horizontal flip."""
    n = u8.shape[0]
    padded = F.pad(u8, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ar = torch.arange(SIZE)
    rows = (oy[:, None] + ar)[:, :, None]
    cols = (ox[:, None] + ar)[:, None, :]
    flip = torch.rand(n, generator=gen) < 0.5
    cols = torch.where(flip[:, None, None], cols.flip(2), cols)
    return padded[torch.arange(n)[:, None, None], rows, cols]


@torch.no_grad()
def evaluate(model, u8, labels, batch=1000):
    """Return (top-1, top-5) accuracy in percent."""
    model.eval()
    top1 = top5 = 0
    for i in range(0, u8.shape[0], batch):
        logits = model(to_input(u8[i:i + batch]))
        y = labels[i:i + batch]
        best = logits.topk(5, dim=1).indices
        top1 += (best[:, 0] == y).sum().item()
        top5 += (best == y[:, None]).any(dim=1).sum().item()
    n = u8.shape[0]
    return 100.0 * top1 / n, 100.0 * top5 / n


def recipe(args, name):
    return {
        "epochs": args.epochs[name],
        "batch_size": args.batch_size,
        "optimizer": "AdamW",
        "max_lr": args.lr,
        "weight_decay": args.weight_decay,
        "schedule": "OneCycleLR (cosine, pct_start 0.25)",
        "augmentation": "random crop 32 with zero padding 2, horizontal flip p=0.5",
        "seed": args.seed,
        "train_images": 60000,
    }


def train(name, args, train_x, train_y, test_x, test_y):
    """Train model `name` and return (model, recipe dict)."""
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = build_model(name).to(memory_format=torch.channels_last)
    epochs = args.epochs[name]
    steps = (train_x.shape[0] + args.batch_size - 1) // args.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr,
                            weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, epochs=epochs, steps_per_epoch=steps,
        pct_start=0.25)
    start = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(train_x.shape[0], generator=gen)
        total = 0.0
        for step in range(steps):
            idx = perm[step * args.batch_size:(step + 1) * args.batch_size]
            x = to_input(augment(train_x[idx], gen))
            loss = F.cross_entropy(model(x), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            if args.probe and (step + 1) % 50 == 0:
                print(f"  step {step + 1}: {time.time() - start:.1f}s", flush=True)
            if args.probe and step + 1 == args.probe:
                el = time.time() - start
                print(f"{name}: {args.probe} steps in {el:.1f}s -> "
                      f"{el / args.probe * steps:.0f}s/epoch", flush=True)
                return None, None
        top1, _ = evaluate(model, test_x, test_y)
        print(f"{name}: epoch {epoch + 1}/{epochs} loss {total / steps:.4f} "
              f"test top-1 {top1:.2f}% ({time.time() - start:.0f}s)", flush=True)
    r = recipe(args, name)
    r["train_seconds"] = round(time.time() - start)
    return model, r


def save_pngs(u8, labels, per_class, folder):
    """Write the first `per_class` images of each class as 8-bit gray PNGs."""
    seen = Counter()
    written = []
    for i in range(u8.shape[0]):
        c = int(labels[i])
        if seen[c] >= per_class:
            continue
        seen[c] += 1
        d = os.path.join(folder, f"{c}_{CLASSES[c]}")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, f"{i:05d}.png")
        Image.fromarray(u8[i].numpy(), mode="L").save(path, optimize=True)
        written.append(path)
        if len(written) == per_class * len(CLASSES):
            break
    return written


def load_pngs(folder):
    """Load a class-per-folder PNG tree back as (uint8 N x 32 x 32, labels,
    paths relative to `folder`), in sorted folder then file name order."""
    images, labels, paths = [], [], []
    for d in sorted(os.listdir(folder)):
        c = int(d.split("_", 1)[0])
        for f in sorted(os.listdir(os.path.join(folder, d))):
            img = Image.open(os.path.join(folder, d, f))
            assert img.mode == "L" and img.size == (SIZE, SIZE), f
            images.append(np.array(img, dtype=np.uint8))
            labels.append(c)
            paths.append(d + "/" + f)
    return (torch.from_numpy(np.stack(images)),
            torch.tensor(labels, dtype=torch.int64), paths)


def export(model, path, opset, preserve_bn):
    """Export `model` to ONNX with a dynamic batch axis; return (ModelProto,
    batch) where batch is "N", or 1 where the exporter cannot keep the batch
    dynamic (torch 1.13 cannot export ShuffleNetV2's chunk at opset 9 when the
    shapes are unknown)."""
    model.eval()
    model = model.to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(1, 3, SIZE, SIZE)
    kwargs = {}
    if preserve_bn:
        kwargs["training"] = torch.onnx.TrainingMode.PRESERVE
    batch = "N"
    try:
        torch.onnx.export(
            model, dummy, path, opset_version=opset,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, **kwargs)
    except torch.onnx.errors.SymbolicValueError as e:
        print(f"  {os.path.basename(path)}: dynamic batch not exportable "
              f"({str(e).splitlines()[0][:120]}...); exporting batch 1")
        batch = 1
        torch.onnx.export(
            model, dummy, path, opset_version=opset,
            input_names=["input"], output_names=["logits"], **kwargs)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    return m, batch


def op_counts(m):
    return dict(sorted(Counter(n.op_type for n in m.graph.node).items()))


def check_bn_inference(m, path):
    bns = [n for n in m.graph.node if n.op_type == "BatchNormalization"]
    if not bns:
        raise SystemExit(f"{path}: no BatchNormalization nodes kept")
    for n in bns:
        if len(n.output) != 1:
            raise SystemExit(f"{path}: {n.name} has {len(n.output)} outputs")
        for a in n.attribute:
            if a.name == "training_mode" and a.i != 0:
                raise SystemExit(f"{path}: {n.name} in training mode")


def check_shape_subgraph(m, path):
    """ShuffleNetV2's channel shuffle reshapes with the runtime batch size, so
    a dynamic-batch export must compute Reshape shapes from Shape at run time."""
    ops = Counter(n.op_type for n in m.graph.node)
    for op in ("Shape", "Gather", "Concat", "Reshape"):
        if ops[op] == 0:
            raise SystemExit(f"{path}: no {op} node; expected a shape subgraph")
    shapes = {o for n in m.graph.node if n.op_type == "Shape" for o in n.output}
    fed = [n for n in m.graph.node if n.op_type == "Reshape"
           and n.input[1] not in {i.name for i in m.graph.initializer}]
    if not shapes or not fed:
        raise SystemExit(f"{path}: Reshape shapes are all constant")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs-mobilenetv1", type=int, default=15)
    p.add_argument("--epochs-shufflenetv2", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", default="mobilenetv1,shufflenetv2")
    p.add_argument("--cache", default="/root/.cache/lprconv/fixtures")
    p.add_argument("--out", default=TESTDATA, help="testdata folder")
    p.add_argument("--export-only", action="store_true",
                   help="load checkpoints from --cache instead of training")
    p.add_argument("--probe", type=int, default=0,
                   help="time this many training steps per model and exit")
    args = p.parse_args()
    args.epochs = {"mobilenetv1": args.epochs_mobilenetv1,
                   "shufflenetv2": args.epochs_shufflenetv2}
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    names = args.models.split(",")

    train_x, train_y = load_split("train")
    test_x, test_y = load_split("t10k")

    if args.probe:
        for name in names:
            train(name, args, train_x, train_y, test_x, test_y)
        return

    os.makedirs(args.cache, exist_ok=True)
    for name in names:
        ckpt = os.path.join(args.cache, name + ".pt")
        if args.export_only:
            continue
        model, r = train(name, args, train_x, train_y, test_x, test_y)
        torch.save({"state_dict": model.state_dict(), "recipe": r}, ckpt)

    img_dir = os.path.join(args.out, "images")
    save_pngs(test_x, test_y, TEST_PER_CLASS, os.path.join(img_dir, "test"))
    save_pngs(train_x, train_y, TRAIN_PER_CLASS, os.path.join(img_dir, "train"))
    png_x, png_y, png_paths = load_pngs(os.path.join(img_dir, "test"))
    # One image of each class, for exact-output checks of an engine.
    ref_idx = [int((png_y == c).nonzero()[0]) for c in range(len(CLASSES))]

    model_dir = os.path.join(args.out, "models")
    os.makedirs(model_dir, exist_ok=True)
    json_path = os.path.join(model_dir, "fixtures.json")
    fixtures = {}
    if os.path.exists(json_path):
        with open(json_path) as f:
            fixtures = json.load(f)
    fixtures.setdefault("models", {})
    fixtures.update({
        "dataset": "Fashion-MNIST (Debian dataset-fashion-mnist)",
        "input": {"name": "input", "shape": ["N", 3, SIZE, SIZE],
                  "layout": "NCHW float32",
                  "preprocess": "28x28 gray zero-padded to 32x32, /255, "
                                "replicated to 3 channels, (x-mean)/std",
                  "mean": [MEAN] * 3, "std": [STD] * 3},
        "output": {"name": "logits", "shape": ["N", len(CLASSES)]},
        "classes": [f"{i}_{c}" for i, c in enumerate(CLASSES)],
        "test_images": {"folder": "images/test", "count": int(png_x.shape[0]),
                        "selection": f"first {TEST_PER_CLASS} of each class "
                                     "of the t10k set; file name = t10k index"},
        "train_images": {"folder": "images/train",
                         "count": TRAIN_PER_CLASS * len(CLASSES),
                         "selection": f"first {TRAIN_PER_CLASS} of each class "
                                      "of the train set; file name = train index"},
    })

    for name in names:
        ckpt = torch.load(os.path.join(args.cache, name + ".pt"))
        model = build_model(name)
        model.load_state_dict(ckpt["state_dict"])
        model.eval()
        full1, full5 = evaluate(model, test_x, test_y)
        png1, png5 = evaluate(model, png_x, png_y)
        with torch.no_grad():
            ref_logits = model(to_input(png_x[ref_idx]))
        reference = [{"image": "images/test/" + png_paths[i],
                      "logits": [round(float(v), 6) for v in row]}
                     for i, row in zip(ref_idx, ref_logits)]
        print(f"{name}: t10k top-1 {full1:.2f}% top-5 {full5:.2f}%; "
              f"500 PNGs top-1 {png1:.2f}% top-5 {png5:.2f}%")
        variants = [("", 13, False), ("_bn", 13, True), ("_op9", 9, False)]
        for suffix, opset, bn in variants:
            fname = f"{name}{suffix}.onnx"
            path = os.path.join(model_dir, fname)
            m, batch = export(model, path, opset, bn)
            check = ref_idx[:1] if batch == 1 else ref_idx
            diff = max_abs_diff(m, model, to_input(png_x[check]))
            if diff > 1e-4:
                raise SystemExit(f"{path}: ONNX differs from PyTorch by {diff}")
            if bn:
                check_bn_inference(m, path)
            elif any(n.op_type == "BatchNormalization" for n in m.graph.node):
                raise SystemExit(f"{path}: BatchNormalization was not folded")
            counts = op_counts(m)
            if name == "shufflenetv2" and batch == "N":
                check_shape_subgraph(m, path)
            size = os.path.getsize(path)
            print(f"  {fname}: {size} bytes, opset {opset}, batch {batch}, "
                  f"max |onnx-torch| {diff:.2e}, ops {counts}")
            fixtures["models"][fname] = {
                "architecture": name,
                "opset": opset,
                "batchnorm": "kept" if bn else "folded into Conv",
                "input": "input", "input_shape": [batch, 3, SIZE, SIZE],
                "output_shape": [batch, len(CLASSES)],
                "output": "logits",
                "mean": [MEAN] * 3, "std": [STD] * 3,
                "classes": fixtures["classes"],
                "parameters": sum(t.numel() for t in model.state_dict().values()
                                  if t.dtype.is_floating_point),
                "top1_t10k": round(full1, 2),
                "top5_t10k": round(full5, 2),
                "top1_test_pngs": round(png1, 2),
                "top5_test_pngs": round(png5, 2),
                "op_counts": counts,
                "bytes": size,
                "recipe": ckpt["recipe"],
                "reference_logits": reference,
            }
    with open(json_path, "w") as f:
        json.dump(fixtures, f, indent=2, sort_keys=True)
        f.write("\n")
    print("wrote", json_path)


if __name__ == "__main__":
    main()
