#!/usr/bin/python3
"""Benchmark helper for bench_svd.sh.

gen DIR      writes the 8 MobileNetV1-1.0 pointwise-sized matrices
             (C = 128, 256, 512 x5, 1024) as raw little-endian float32 files
             w<i>_<C>.f32 plus their singular values s<i>_<C>.f64 (float64).
             Each is U diag(s) V^T with random orthogonal U, V (fixed seeds)
             and s_i = exp(-i / (0.46 C)), a decay whose rank-C/4 truncation
             error (0.573) matches that of a trained MobileNetV1 (about 0.58).
torch DIR    loads the matrices, runs torch.linalg.svd on each and forms
             balanced rank-C/4 factors B = U_r S_r^1/2, A = S_r^1/2 V_r^T;
             prints the total seconds (2 threads).
"""
import glob
import os
import sys
import time

import numpy as np

SIZES = [128, 256, 512, 512, 512, 512, 512, 1024]
TAU = 0.46


def gen(d):
    os.makedirs(d, exist_ok=True)
    for i, c in enumerate(SIZES):
        rng = np.random.default_rng(1000 + i)
        u, _ = np.linalg.qr(rng.standard_normal((c, c)))
        v, _ = np.linalg.qr(rng.standard_normal((c, c)))
        s = np.exp(-np.arange(c) / (TAU * c))
        w = (u * s) @ v.T
        w.astype("<f4").tofile(os.path.join(d, "w%d_%d.f32" % (i, c)))
        s.astype("<f8").tofile(os.path.join(d, "s%d_%d.f64" % (i, c)))


def load(d):
    mats = []
    for i, c in enumerate(SIZES):
        w = np.fromfile(os.path.join(d, "w%d_%d.f32" % (i, c)), dtype="<f4").reshape(c, c)
        mats.append(w)
    return mats


def run_torch(d):
    import torch

    torch.set_num_threads(2)
    mats = [torch.from_numpy(m.copy()) for m in load(d)]
    # warm-up on a small matrix so library initialization is not timed
    torch.linalg.svd(torch.randn(64, 64))
    t0 = time.perf_counter()
    c0 = time.process_time()
    worst = 0.0
    for w in mats:
        c = w.shape[0]
        r = (c + 3) // 4
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        h = s[:r].sqrt()
        b = u[:, :r] * h
        a = h[:, None] * vh[:r]
        worst = max(worst, float(torch.linalg.norm(w - b @ a) / torch.linalg.norm(w)))
    dt = time.perf_counter() - t0
    dc = time.process_time() - c0
    print("torch_seconds %.4f torch_cpu_seconds %.4f worst_relerr %.5f" % (dt, dc, worst))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("gen", "torch"):
        sys.exit("usage: gen_and_torch.py gen|torch DIR")
    if sys.argv[1] == "gen":
        gen(sys.argv[2])
    else:
        run_torch(sys.argv[2])
