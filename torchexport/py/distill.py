#!/usr/bin/env python3
"""Distil the exported student from its teacher with lprconv's recipe, on
one process or many (torchrun + DistributedDataParallel).

Recipe (as lprconv compress --data fine-tunes): the loss is KD, the KL
divergence from the teacher's to the student's softmax at --temperature T,
times T^2 (kd+ce adds cross-entropy with the labels, weighted --ce-weight;
mse compares logits); Adam with decoupled weight decay (or SGD); the
learning rate rises linearly over --warmup steps (default 5% of the run)
to --lr, then follows a cosine down to --min-lr-ratio * --lr; --train lpr
trains only the LPR tensors (initializers of nodes named "/lpr_"), --train
all every weight. A --val-fraction of the data is held out; after each
epoch the student's top-1 agreement with the teacher is measured there and
the best epoch is kept. lprconv applies no augmentation; --hflip adds
random horizontal flips.

--batch is per process: N processes with batch B train like one process
with batch N*B (DistributedSampler deals each global batch out in turns).

Outputs in --out: log.jsonl (one line per step: global mean loss and
learning rate), checkpoint.pt (training state, ONNX-keyed; --resume
continues from it), weights.safetensors (the student's parameters keyed by
ONNX initializer name, plus probe tensors; `lprconv import-torch` reads it).

Written by lprconv export-torch; edits are lost on the next export.
"""
import argparse
import copy
import gzip
import json
import math
import os
import re
import struct
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model as student_module  # noqa: E402

with open(os.path.join(HERE, "names.json")) as _f:
    NAMES = json.load(_f)

PROBE_INPUT = "lprconv.probe.input"
PROBE_OUTPUT = "lprconv.probe.output"
IMAGE_EXTS = (".png", ".jpg", ".jpeg")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Distil the exported student (lprconv's recipe) with DDP.")
    p.add_argument("--data", required=True, help="image folder (class sub-folders) or IDX folder")
    p.add_argument("--split", default="train", help="split of an IDX folder: train or test")
    p.add_argument("--mean", default="{{.Mean}}", help="per-channel mean after scaling to [0,1] (comma-separated)")
    p.add_argument("--std", default="{{.Std}}", help="per-channel std")
    p.add_argument("--fit", default="{{.Fit}}", choices=["pad", "crop", "resize"], help="how other image sizes reach the model's")
    p.add_argument("--limit", type=int, default=0, help="use the first N images (0: all)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps", type=int, default=0, help="train N steps instead of --epochs")
    p.add_argument("--batch", type=int, default={{.Batch}}, help="batch size per process")
    p.add_argument("--lr", type=float, default={{.LR}}, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=0, help="warm-up steps (0: 5%% of the run)")
    p.add_argument("--min-lr-ratio", type=float, default=0.0)
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--weight-decay", type=float, default=0.0, help="decoupled for adam, L2 for sgd")
    p.add_argument("--loss", default="kd", choices=["kd", "kd+ce", "mse"])
    p.add_argument("--temperature", type=float, default={{.Temperature}})
    p.add_argument("--ce-weight", type=float, default=0.5, help="weight of cross-entropy in kd+ce")
    p.add_argument("--train", default="{{.Train}}", choices=["lpr", "all"], help="which tensors learn")
    p.add_argument("--val-fraction", type=float, default={{.ValFraction}}, help="held out to keep the best epoch (0: none)")
    p.add_argument("--seed", type=int, default=1, help="seed of the split, the shuffling and --hflip")
    p.add_argument("--hflip", action="store_true", help="augment with random horizontal flips")
    p.add_argument("--out", default="run", help="output folder")
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p.add_argument("--stop-after", type=int, default=0,
                   help="stop after N steps of this run, with a checkpoint (e.g. within a batch job's time limit); --resume continues")
    p.add_argument("--backend", default="", help="nccl or gloo (default: nccl with CUDA, else gloo)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when CUDA is available")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per process (0: torch's default)")
    p.add_argument("--workers", type=int, default=2, help="data loader worker processes per process")
    p.add_argument("--probe", type=int, default=4, help="random inputs whose outputs are stored for import-torch to verify")
    p.add_argument("--log-every", type=int, default=50)
    return p.parse_args(argv)


# ---------------------------------------------------------------- data

class Images(Dataset):
    """Images and labels, preprocessed as lprconv's dataset package does:
    channels converted (gray replicated, RGB to luma), fitted to the model's
    size, then (x - mean) / std per channel."""

    def __init__(self, args, chw):
        self.c, self.h, self.w = chw
        self.fit = args.fit
        self.mean = per_channel(args.mean, self.c, 0.0)
        self.std = per_channel(args.std, self.c, 1.0)
        self.idx = None
        path = args.data
        if find_idx(path, args.split) is not None:
            self.pixels, self.labels = read_idx(*find_idx(path, args.split))
            self.paths = None
        else:
            self.paths, self.labels = list_folder(path)
            self.pixels = None
        if args.limit > 0:
            self.labels = self.labels[:args.limit]
            if self.paths is not None:
                self.paths = self.paths[:args.limit]

    def __len__(self):
        return len(self.labels)

    def raw(self, i):
        if self.pixels is not None:
            return self.pixels[i][None].astype(np.float32) / 255.0
        from PIL import Image
        with Image.open(self.paths[i]) as im:
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB")
            a = np.asarray(im, dtype=np.float32) / 255.0
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)

    def __getitem__(self, i):
        x = self.raw(i)
        if x.shape[0] != self.c:
            if x.shape[0] == 1:
                x = np.repeat(x, self.c, axis=0)
            elif x.shape[0] == 3 and self.c == 1:
                gray = x[0] == x[1]
                luma = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
                x = np.where(gray & (x[1] == x[2]), x[0], luma)[None]
            else:
                raise ValueError("image %d has %d channels; the model wants %d" % (i, x.shape[0], self.c))
        x = fit(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), self.h, self.w, self.fit)
        x = (x - self.mean) / self.std
        return x, int(self.labels[i])


def per_channel(spec, c, default):
    vals = [float(v) for v in spec.split(",")] if spec else [default]
    if len(vals) == 1:
        vals = vals * c
    if len(vals) != c:
        raise SystemExit("distill.py: %d values %r for %d channels" % (len(vals), spec, c))
    return torch.tensor(vals, dtype=torch.float32).reshape(c, 1, 1)


def fit(x, h, w, how):
    """Fits a C,H,W image to h x w: zero padding or a crop centred (offsets
    rounded down), or a bilinear resize (PyTorch's align_corners=False)."""
    ih, iw = x.shape[1], x.shape[2]
    if (ih, iw) == (h, w):
        return x
    if how == "resize":
        return F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    out = torch.zeros(x.shape[0], h, w, dtype=x.dtype)
    dy, sy = max(0, (h - ih) // 2), max(0, (ih - h) // 2)
    dx, sx = max(0, (w - iw) // 2), max(0, (iw - w) // 2)
    rows, cols = min(h, ih), min(w, iw)
    out[:, dy:dy + rows, dx:dx + cols] = x[:, sy:sy + rows, sx:sx + cols]
    return out


def list_folder(root):
    """Images under class sub-folders; a folder's label is the leading
    integer of "<index>_<name>" when every folder has one, otherwise its
    position in sorted order."""
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise SystemExit("distill.py: %s has no class sub-folders" % root)
    nums = [re.match(r"^(\d+)_", d) for d in classes]
    labels_of = {d: (int(m.group(1)) if all(nums) else i) for i, (d, m) in enumerate(zip(classes, nums))}
    paths, labels = [], []
    for d in classes:
        for dirpath, _, files in sorted(os.walk(os.path.join(root, d))):
            for f in sorted(files):
                if f.lower().endswith(IMAGE_EXTS):
                    paths.append(os.path.join(dirpath, f))
                    labels.append(labels_of[d])
    return paths, np.array(labels, dtype=np.int64)


def find_idx(root, split):
    """The images and labels files of an IDX folder's split, or None."""
    if not os.path.isdir(root):
        return None
    prefix = "t10k" if split == "test" else "train"
    names = os.listdir(root)
    img = [n for n in names if n.startswith(prefix + "-images-idx3-ubyte")]
    lab = [n for n in names if n.startswith(prefix + "-labels-idx1-ubyte")]
    if not img or not lab:
        return None
    return os.path.join(root, sorted(img)[0]), os.path.join(root, sorted(lab)[0])


def read_idx_file(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise SystemExit("distill.py: %s is not an unsigned-byte IDX file" % path)
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_idx(images, labels):
    x, y = read_idx_file(images), read_idx_file(labels).astype(np.int64)
    if len(x) != len(y):
        raise SystemExit("distill.py: %d images but %d labels" % (len(x), len(y)))
    return x, y


# ---------------------------------------------------------------- recipe

def lr_at(step, peak, warmup, total, min_ratio):
    """Linear warm-up to peak over warmup steps, then cosine to min_ratio*peak."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if total <= warmup:
        return peak
    frac = min(max((step - warmup) / (total - warmup), 0.0), 1.0)
    lo = peak * min_ratio
    return lo + (peak - lo) * 0.5 * (1 + math.cos(math.pi * frac))


def distill_loss(s, t, labels, kind, temperature, ce_weight):
    """Mean over the batch of lprconv's loss: T^2 KL(p_t || p_s) at
    temperature T (kd), mixed (1-w) KD + w CE where labels are known
    (kd+ce), or the mean squared logit difference (mse)."""
    if kind == "mse":
        return ((s - t) ** 2).mean()
    T = temperature
    log_ps = F.log_softmax(s / T, dim=1)
    log_pt = F.log_softmax(t / T, dim=1)
    kd = (log_pt.exp() * (log_pt - log_ps)).sum(dim=1) * (T * T)
    if kind == "kd":
        return kd.mean()
    known = labels >= 0
    ce = F.cross_entropy(s, labels.clamp(min=0), reduction="none")
    return torch.where(known, (1 - ce_weight) * kd + ce_weight * ce, kd).mean()


def first(y):
    return y[0] if isinstance(y, (tuple, list)) else y


# ---------------------------------------------------------------- outputs

SAFETENSORS_DTYPES = {torch.float32: ("F32", "<f4"), torch.int64: ("I64", "<i8")}


def save_safetensors(path, tensors, metadata):
    """Writes tensors in the safetensors format: an 8-byte little-endian
    header length, a JSON header (dtype, shape, data_offsets per tensor,
    plus __metadata__), then the raw little-endian bytes."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in SAFETENSORS_DTYPES:
            t = t.float()
        code, np_type = SAFETENSORS_DTYPES[t.dtype]
        b = t.numpy().astype(np_type).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    atomic_write(path, lambda f: [f.write(struct.pack("<Q", len(h))), f.write(h)] + [f.write(b) for b in blobs])


def atomic_write(path, write):
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def probe_outputs(student, chw, n):
    """Outputs of a CPU float32 copy of the student on n seeded standard
    normal inputs (import-torch checks the ONNX model against them)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn((n,) + tuple(chw), generator=g)
    m = copy.deepcopy(student).cpu().float().eval()
    with torch.no_grad():
        return x, first(m(x))


# ---------------------------------------------------------------- main

def main(argv=None):
    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and not args.cpu
    if world > 1:
        dist.init_process_group(args.backend or ("nccl" if use_cuda else "gloo"))
    device = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    inp = NAMES["input"]
    chw = (inp["channels"], inp["height"], inp["width"])
    if inp["batch"] and args.batch != inp["batch"]:
        raise SystemExit("distill.py: the model's input %r has a fixed batch size of %d; use --batch %d or export the model with a dynamic batch"
                         % (inp["name"], inp["batch"], inp["batch"]))
    data = Images(args, chw)
    n = len(data)
    g = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(n, generator=g).tolist()
    n_val = int(round(args.val_fraction * n)) if args.val_fraction > 0 else 0
    val_idx, train_idx = sorted(perm[:n_val]), sorted(perm[n_val:])
    train = torch.utils.data.Subset(data, train_idx)
    sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=args.seed, drop_last=True)
    loader = DataLoader(train, batch_size=args.batch, sampler=sampler, drop_last=True,
                        num_workers=args.workers, persistent_workers=args.workers > 0)
    per_epoch = len(loader)
    if per_epoch == 0:
        raise SystemExit("distill.py: %d training images give no batch of %d per process; lower --batch" % (len(train), args.batch))
    total = args.steps if args.steps > 0 else args.epochs * per_epoch
    warmup = args.warmup if args.warmup > 0 else total // 20

    student = student_module.Model().to(device)
    if os.path.exists(os.path.join(HERE, "teacher.py")):
        import teacher as teacher_module
        teacher = teacher_module.Model()
    else:
        teacher = student_module.Model()  # the student's starting point teaches
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    learn = set(NAMES["student"]["trainable"][args.train])
    if not learn:
        raise SystemExit("distill.py: the student has no %s tensors to train" % args.train)
    by_attr = student_module.ONNX_NAMES
    params = []
    for attr, p in student.named_parameters():
        p.requires_grad_(by_attr[attr] in learn)
        if p.requires_grad:
            params.append(p)
    net = student
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            student, device_ids=[local] if use_cuda else None, broadcast_buffers=False)
    if args.optimizer == "adam":
        opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=args.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_at(s, args.lr, warmup, total, args.min_lr_ratio) / args.lr)

    os.makedirs(args.out, exist_ok=True)
    ck_path = os.path.join(args.out, "checkpoint.pt")
    step, best, best_agree, loss_mean = 0, None, -1.0, 0.0
    if args.resume and os.path.exists(ck_path):
        ck = torch.load(ck_path, map_location="cpu")
        student.load_onnx_state_dict(ck["state"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        step, best, best_agree, loss_mean = ck["step"], ck["best"], ck["best_agreement"], ck["loss_mean"]
        if rank == 0:
            print("resuming at step %d" % step, flush=True)

    def params_by_name():
        return {by_attr[a]: p.detach().cpu().clone() for a, p in student.named_parameters()}

    def checkpoint():
        if rank != 0:
            return
        state = {"step": step, "state": params_by_name(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "best": best, "best_agreement": best_agree,
                 "loss_mean": loss_mean, "args": vars(args)}
        atomic_write(ck_path, lambda f: torch.save(state, f))

    def validate():
        nonlocal best, best_agree
        if rank == 0 and n_val > 0:
            vl = DataLoader(torch.utils.data.Subset(data, val_idx), batch_size=args.batch)
            agree = count = 0
            student.eval()
            with torch.no_grad():
                for x, _ in vl:
                    x = x.to(device)
                    agree += (first(student(x)).argmax(1) == first(teacher(x)).argmax(1)).sum().item()
                    count += len(x)
            student.train()
            a = agree / max(count, 1)
            print("step %d: validation agreement %.2f%% on %d images" % (step, 100 * a, count), flush=True)
            if a > best_agree:
                best_agree, best = a, params_by_name()
        if world > 1:
            dist.barrier()

    log = open(os.path.join(args.out, "log.jsonl"), "a") if rank == 0 else None
    flip = torch.Generator().manual_seed(args.seed * 1000003 + rank)
    start = time.time()
    first_step, stopped = step, False
    epoch = step // per_epoch
    while step < total:
        sampler.set_epoch(epoch)
        skip = step - epoch * per_epoch
        for i, (x, y) in enumerate(loader):
            if i < skip:
                continue
            if step >= total:
                break
            if args.hflip:
                m = torch.rand(len(x), generator=flip) < 0.5
                x = torch.where(m[:, None, None, None], x.flip(3), x)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.no_grad():
                t = first(teacher(x))
            loss = distill_loss(first(net(x)), t, y, args.loss, args.temperature, args.ce_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            lr = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            g_loss = loss.detach().clone()
            if world > 1:
                dist.all_reduce(g_loss)
                g_loss /= world
            g_loss = g_loss.item()
            if not math.isfinite(g_loss) or (step > 0 and loss_mean > 0 and g_loss > 50 * loss_mean and g_loss > 1e-3):
                raise SystemExit("distill.py: loss diverged at step %d (loss %g, running mean %g); lower --lr" % (step + 1, g_loss, loss_mean))
            loss_mean = g_loss if step == 0 else 0.95 * loss_mean + 0.05 * g_loss
            step += 1
            if log:
                log.write(json.dumps({"step": step, "epoch": epoch, "loss": g_loss, "lr": lr}) + "\n")
                log.flush()
                if step % args.log_every == 0 or step == total:
                    print("step %d/%d epoch %d loss %.5f (mean %.5f) lr %.3g, %.1f images/s" % (
                        step, total, epoch + 1, g_loss, loss_mean, lr,
                        (step - first_step) * args.batch * world / max(time.time() - start, 1e-9)), flush=True)
            if step % args.checkpoint_every == 0:
                checkpoint()
            if 0 < args.stop_after <= step - first_step and step < total:
                stopped = True
                break
        else:
            epoch += 1
            validate()
            checkpoint()
            continue
        break
    if stopped:
        checkpoint()
        if rank == 0:
            print("stopped at step %d of %d; run again with --resume to continue" % (step, total), flush=True)
        if world > 1:
            dist.barrier()
            dist.destroy_process_group()
        return
    if step % per_epoch != 0:
        validate()
    if best is not None:
        student.load_onnx_state_dict(best)
    checkpoint()
    if rank == 0:
        tensors = params_by_name()
        meta = {"format": "lprconv-torch", "steps": step, "train": args.train,
                "probe_input": PROBE_INPUT, "probe_output": PROBE_OUTPUT}
        if args.probe > 0:
            x, y = probe_outputs(student, chw, args.probe)
            tensors[PROBE_INPUT], tensors[PROBE_OUTPUT] = x, y
        save_safetensors(os.path.join(args.out, "weights.safetensors"), tensors, meta)
        print("wrote %s after %d steps" % (os.path.join(args.out, "weights.safetensors"), step), flush=True)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
