"""The networks of "Deep Residual Learning for Image Recognition" (He et al., 2015).

One block family serves both the ImageNet nets (Table 1) and the CIFAR nets (Sec. 4.2). Parameter
names follow torchvision (`conv1`, `bn1`, `layerN.i.convK`, `downsample.0/1`, `fc`) so its weights
load as they are.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnetlab.errors import UserError

Shortcut = Literal["A", "B", "C"]
Style = Literal["paper", "torchvision"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: identity with every second pixel and zero channels added; no parameters.

    The new channels are split evenly before and after the existing ones, as in the public CIFAR
    reproduction whose weights we load; the paper only says "padded with zeros".
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad_before = (out_planes - in_planes) // 2
        self.pad_after = out_planes - in_planes - self.pad_before

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


def make_shortcut(in_planes: int, out_planes: int, stride: int, option: Shortcut) -> nn.Module | None:
    """The shortcut of one block: None means identity."""
    reshapes = stride != 1 or in_planes != out_planes
    if option == "C" or (option == "B" and reshapes):
        return nn.Sequential(conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))
    if option == "A" and reshapes:
        return ZeroPadShortcut(in_planes, out_planes, stride)
    if option not in ("A", "B", "C"):
        raise ValueError(f"shortcut must be 'A', 'B' or 'C', not {option!r}")
    return None


class BasicBlock(nn.Module):
    """[3x3, w; 3x3, w]: ResNet-18/34 and every CIFAR net."""

    expansion = 1

    def __init__(
        self, in_planes: int, planes: int, stride: int, shortcut: Shortcut, residual: bool, style: Style
    ) -> None:
        super().__init__()
        self.residual = residual
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(in_planes, planes, stride, shortcut) if residual else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(nn.Module):
    """[1x1, w; 3x3, w; 1x1, 4w]: ResNet-50/101/152.

    style="paper" strides the first 1x1 conv (the original release); style="torchvision" strides the
    3x3 conv ("v1.5"). The stride is applied once, never on both.
    """

    expansion = 4

    def __init__(
        self, in_planes: int, planes: int, stride: int, shortcut: Shortcut, residual: bool, style: Style
    ) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if style == "paper" else (1, stride)
        self.residual = residual
        self.conv1 = conv1x1(in_planes, planes, stride_1x1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride_3x3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_planes, 1)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(in_planes, out_planes, stride, shortcut) if residual else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """A residual (or, with residual=False, plain) network.

    imagenet=True builds Table 1's stem (7x7/2 conv, 3x3/2 max pool) and four stages of widths
    64..512; imagenet=False builds Sec. 4.2's CIFAR net (3x3 conv, 16 filters, three stages of widths
    16, 32, 64).
    """

    def __init__(
        self,
        block: Block,
        layers: list[int],
        *,
        imagenet: bool,
        num_classes: int,
        shortcut: Shortcut,
        residual: bool = True,
        style: Style = "paper",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        widths = [64, 128, 256, 512] if imagenet else [16, 32, 64]
        if len(layers) != len(widths):
            raise ValueError(f"expected {len(widths)} stage depths, got {layers}")
        if zero_init_residual and not residual:
            # Zeroing the last BN of a block with no shortcut zeroes the block's output: a dead network.
            raise UserError("zero_init_residual needs shortcuts: on a plain net it would zero every block's "
                            "output; use it with a ResNet, or leave it off")
        self.residual, self.style, self.bottleneck = residual, style, block is Bottleneck
        self.shortcut = shortcut  # what built it, recorded with exported weights
        self.in_planes = widths[0]
        if imagenet:
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if imagenet else nn.Identity()
        self.stages = len(widths)
        for i, (width, depth) in enumerate(zip(widths, layers)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(depth):
                blocks.append(block(self.in_planes, width, stride if j == 0 else 1, shortcut, residual, style))
                self.in_planes = width * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.in_planes, num_classes)

        # He et al. 2015 ("Delving deep into rectifiers"): Gaussian, std sqrt(2 / fan).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")  # N(0, 2 / fan_out)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Not in the paper (Goyal et al. 2017): each branch starts as zero, the block as identity. Every
            # block says which BatchNorm ends its branch; a block that cannot is refused, never skipped.
            for i in range(self.stages):
                for b in getattr(self, f"layer{i + 1}"):
                    if not callable(getattr(b, "last_bn", None)):
                        raise TypeError(f"zero_init_residual: block {type(b).__name__} has no last_bn() naming the "
                                        "BatchNorm that ends its residual branch")
                    nn.init.zeros_(b.last_bn().weight)

    def features(self, x: Tensor) -> list[Tensor]:
        """The feature map after the stem and after each stage."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = [x]
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
            maps.append(x)
        return maps

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)[-1]
        return self.fc(torch.flatten(self.avgpool(x), 1))
