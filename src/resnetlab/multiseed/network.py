"""K independent runs of one network as one network K times wider, built from the runs' own models.

Each layer of the single network is replaced by its K-run counterpart: a convolution by one with K times the
groups (group k sees only run k's channels), a BatchNorm by one K times wider (it works per channel, so runs
never mix), option A's zero padding by one that pads each run's channels on their own, and the fc layer by K
fc layers. The input is (B, K*3, H, W), run k's images in channels 3k..3k+2; the output (B, K, classes).
Parameter names stay the single network's, so a stacked state dict is the runs' concatenated (`pack`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnetlab.models.freezing import carry_freezing
from resnetlab.models.resnet import ZeroPadShortcut

# Layers that hold no state and work per channel or per position: the same module serves K runs.
SHARED = (nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Identity, nn.Sequential)


class RunsLinear(nn.Module):
    """K independent fc layers, (B, K * C) -> (B, K, classes); parameters named as one nn.Linear's, with a
    leading run dimension."""

    def __init__(self, runs: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.runs, self.in_features, self.out_features = runs, in_features, out_features
        self.weight = nn.Parameter(torch.zeros(runs, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(runs, out_features))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("bkc,kjc->bkj", x.view(len(x), self.runs, -1), self.weight) + self.bias


class RunsZeroPad(nn.Module):
    """Option A's shortcut for K runs: each run's channels padded with zeros on their own."""

    def __init__(self, single: ZeroPadShortcut, runs: int) -> None:
        super().__init__()
        self.stride, self.runs = single.stride, runs
        self.pad_before, self.pad_after = single.pad_before, single.pad_after

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        n, c, h, w = x.shape
        x = x.reshape(n, self.runs, c // self.runs, h, w)
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after)).reshape(n, -1, h, w)


def widened(layer: nn.Module, k: int) -> nn.Module | None:
    """The K-run counterpart of one layer (None: the layer serves K runs as it is)."""
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(layer.in_channels * k, layer.out_channels * k, layer.kernel_size, layer.stride,
                         layer.padding, layer.dilation, layer.groups * k, layer.bias is not None, layer.padding_mode)
    if isinstance(layer, nn.BatchNorm2d):
        return nn.BatchNorm2d(layer.num_features * k, layer.eps, layer.momentum, layer.affine, layer.track_running_stats)
    if isinstance(layer, nn.Linear):
        return RunsLinear(k, layer.in_features, layer.out_features)
    if isinstance(layer, ZeroPadShortcut):
        return RunsZeroPad(layer, k)
    if isinstance(layer, SHARED) or not (list(layer.parameters(recurse=False)) or list(layer.buffers(recurse=False))):
        return None
    # A layer with state whose K-run form is not known here would be shared by the runs: refuse it.
    raise TypeError(f"cannot train {type(layer).__name__} layers as several runs together")


def stack(models: list[nn.Module]) -> nn.Module:
    """One network computing each of `models` (K copies of one architecture) on its own channels, holding
    their weights and BN statistics."""
    net = copy.deepcopy(models[0]).cpu()
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            wide = widened(child, len(models))
            if wide is not None:
                carry_freezing(child, wide)  # --freeze: frozen stages stay frozen for every run
                setattr(parent, name, wide)
    net.load_state_dict(pack([m.state_dict() for m in models]))
    return net


def pack(states: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """K state dicts of one architecture -> the stacked network's: fc stacked, everything else concatenated."""
    out = {}
    for key in states[0]:
        values = [s[key] for s in states]
        if key.endswith("num_batches_tracked"):
            out[key] = values[0].clone()
        elif key.startswith("fc."):
            out[key] = torch.stack(values)
        else:
            out[key] = torch.cat(values)
    return out


def unpack(stacked: dict[str, Tensor], template: dict[str, Tensor], k: int) -> list[dict[str, Tensor]]:
    """The inverse of pack: run i's state dict, keyed and shaped like `template`."""
    runs: list[dict[str, Tensor]] = [{} for _ in range(k)]
    for key, like in template.items():
        value = stacked[key]
        for i in range(k):
            runs[i][key] = value.clone() if key.endswith("num_batches_tracked") else value.chunk(k)[i].reshape(like.shape).clone()
    return runs
