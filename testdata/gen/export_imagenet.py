#!/usr/bin/python3
"""Export randomly initialized ImageNet-shaped models (1x3x224x224 input,
1000 classes) to ONNX (opset 13, dynamic batch axis) for lprconv's
benchmarks and larger conversion tests.

    /usr/bin/python3 testdata/gen/export_imagenet.py [--out DIR] [--seed 0]

The weights are random (seeded), so accuracy means nothing; the files exist to
exercise the real ImageNet layer shapes. BatchNorm running statistics are set
to seeded random values, not the identity, so that folding them is not a no-op.
With such statistics the signal dies inside MobileNetV1 and its logits hardly
depend on the input, so mobilenetv1_1.0_calib.onnx is the same network with its
BatchNorm statistics measured instead on seeded standard-normal images (training
mode, cumulative averages): every layer's output is normalized, the logits
depend on the input, and output-fidelity comparisons on random inputs mean
something (a proxy still: the weights are random).
The output folder is a cache outside the repository and is not committed.
"""

import argparse
import os
import sys
from collections import Counter

import onnx
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mobilenetv1 import MobileNetV1  # noqa: E402
from torch_onnx_eval import max_abs_diff  # noqa: E402

# the export whose BatchNorm statistics are measured (measure_bn)
CALIBRATED = "mobilenetv1_1.0_calib.onnx"

MODELS = {
    "mobilenetv1_1.0.onnx": lambda: MobileNetV1(width=1.0, num_classes=1000),
    CALIBRATED: lambda: MobileNetV1(width=1.0, num_classes=1000),
    "shufflenetv2_x1.0.onnx": lambda: torchvision.models.shufflenet_v2_x1_0(num_classes=1000),
    "mobilenetv2.onnx": lambda: torchvision.models.mobilenet_v2(num_classes=1000),
    "mobilenetv3_small.onnx": lambda: torchvision.models.mobilenet_v3_small(num_classes=1000),
}


def randomize_bn(model, gen):
    """Give every BatchNorm seeded non-trivial affine and running statistics."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=gen)
            m.bias.data = 0.1 * torch.randn(n, generator=gen)
            m.running_mean = 0.1 * torch.randn(n, generator=gen)
            m.running_var = 0.5 + torch.rand(n, generator=gen)


def measure_bn(model, seed, batches=8, batch=16):
    """Replace every BatchNorm's running statistics by those of the model's
    own activations on seeded standard-normal images (cumulative averages)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    gen = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch, 3, 224, 224, generator=gen))
    model.eval()


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/root/.cache/lprconv/imagenet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--opset", type=int, default=13)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    for fname, build in MODELS.items():
        torch.manual_seed(args.seed)
        model = build()
        randomize_bn(model, torch.Generator().manual_seed(args.seed + 1))
        if fname == CALIBRATED:
            measure_bn(model, args.seed + 2)
        model.eval()
        path = os.path.join(args.out, fname)
        tmp = path + ".tmp"
        torch.onnx.export(
            model, torch.zeros(1, 3, 224, 224), tmp, opset_version=args.opset,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        m = onnx.load(tmp)
        onnx.checker.check_model(m)
        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(args.seed))
        diff = max_abs_diff(m, model, x)
        if diff > 1e-3:
            raise SystemExit(f"{fname}: ONNX differs from PyTorch by {diff}")
        os.replace(tmp, path)
        params = sum(t.numel() for t in model.state_dict().values()
                     if t.dtype.is_floating_point)
        counts = dict(sorted(Counter(n.op_type for n in m.graph.node).items()))
        print(f"{fname}: {os.path.getsize(path)} bytes, {params} params, "
              f"max |onnx-torch| {diff:.2e} (batch 2), ops {counts}", flush=True)


if __name__ == "__main__":
    main()
