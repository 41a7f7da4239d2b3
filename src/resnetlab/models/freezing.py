"""Frozen layers (fine-tuning with --freeze): parameters without gradients, and BatchNorm layers that normalize
with their running statistics and never update them, in training too."""

from __future__ import annotations

from torch import nn


class EvaluatingBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that stays in evaluation mode whatever train() asks: the same tensors and state dict, so a
    checkpoint of a frozen network loads into an ordinary one. A class, not a patched method, so that a deep
    copy (the multi-seed adapter's) stays frozen on its own."""

    def train(self, mode: bool = True) -> "EvaluatingBatchNorm2d":
        return super().train(False)


def freeze(module: nn.Module) -> None:
    """No gradient and no update for `module`'s parameters; its BatchNorm layers keep their statistics."""
    for p in module.parameters():
        p.requires_grad_(False)
    for bn in module.modules():
        if type(bn) is nn.BatchNorm2d:
            keep_statistics(bn)


def keep_statistics(bn: nn.BatchNorm2d) -> None:
    bn.__class__ = EvaluatingBatchNorm2d
    bn.eval()


def carry_freezing(single: nn.Module, wide: nn.Module) -> None:
    """Give `wide` (a layer's K-run counterpart) the frozen state of `single`."""
    own = list(single.parameters(recurse=False))
    if own and not any(p.requires_grad for p in own):
        for p in wide.parameters(recurse=False):
            p.requires_grad_(False)
    if isinstance(single, EvaluatingBatchNorm2d) and type(wide) is nn.BatchNorm2d:
        keep_statistics(wide)
