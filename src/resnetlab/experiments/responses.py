"""Fig. 7: the standard deviation of each 3x3 layer's response, after BN and before the nonlinearity
(before the addition in a residual block), measured over an evaluation split."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from resnetlab.models.resnet import BasicBlock, ResNet


def response_layers(model: ResNet) -> list[nn.Module]:
    """The BN following every 3x3 conv, in forward order: the stem's, then bn1 and bn2 of each block."""
    if model.conv1.kernel_size != (3, 3):
        raise ValueError("Fig. 7 is defined for the CIFAR nets, whose every conv is 3x3")
    layers: list[nn.Module] = [model.bn1]
    for block in model.modules():
        if isinstance(block, BasicBlock):
            layers += [block.bn1, block.bn2]
    return layers


@torch.no_grad()
def response_stds(model: nn.Module, layers: list[nn.Module], batches: Iterable[tuple[Tensor, Tensor]]) -> list[float]:
    """For each layer: the std of every channel's output over all images and positions, averaged over
    channels. Sums are kept in float64 so the whole split is one exact pass."""
    sums: dict[int, list[Tensor]] = {}

    def hook(i: int):
        def record(_module: nn.Module, _inputs: tuple, out: Tensor) -> None:
            x = out.detach().double().transpose(0, 1).reshape(out.shape[1], -1)
            s = sums.setdefault(i, [torch.zeros(out.shape[1], dtype=torch.float64, device=out.device)] * 2 + [0])
            sums[i] = [s[0] + x.sum(1), s[1] + (x * x).sum(1), s[2] + x.shape[1]]
        return record

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(batch[0])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    stds = []
    for i in range(len(layers)):
        s, sq, n = sums[i]
        var = (sq / n - (s / n) ** 2).clamp_min(0) * n / max(n - 1, 1)
        stds.append(float(var.sqrt().mean()))
    return stds
