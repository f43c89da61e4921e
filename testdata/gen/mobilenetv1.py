"""MobileNetV1 (Howard et al., 2017) with a width multiplier, shared by the
fixture scripts in this folder.

Layout: a 3x3 stride-2 convolution followed by 13 depthwise-separable blocks
(3x3 depthwise + 1x1 pointwise), BatchNorm + ReLU after every convolution,
global average pooling and a linear classifier.
"""

import torch
from torch import nn

# (output channels at width 1.0, stride of the depthwise conv) per block.
BLOCKS = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
]
STEM_CHANNELS = 32


def conv_bn_relu(c_in, c_out, kernel, stride, groups=1):
    """Convolution without bias, then BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNetV1 with width multiplier `width` and `num_classes` outputs."""

    def __init__(self, width=1.0, num_classes=1000):
        super().__init__()
        c = int(STEM_CHANNELS * width)
        layers = [conv_bn_relu(3, c, 3, 2)]
        for out, stride in BLOCKS:
            o = int(out * width)
            layers.append(nn.Sequential(
                conv_bn_relu(c, c, 3, stride, groups=c),  # depthwise
                conv_bn_relu(c, o, 1, 1),                 # pointwise
            ))
            c = o
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out",
                                        nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.features(x)
        x = self.pool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)
