"""Frozen layers (fine-tuning with --freeze): parameters without gradients, and BatchNorm layers that normalize
with their running statistics and never update them, in training too."""

from __future__ import annotations

import functools

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class StaysEvaluating:
    """Mixed into a BatchNorm class: evaluation mode whatever train() asks, with the same tensors and state dict,
    so a checkpoint of a frozen network loads into an ordinary one. A class, not a patched method, so that a deep
    copy (the multi-seed adapter's) stays frozen on its own."""

    def train(self, mode: bool = True):
        return super().train(False)


@functools.cache
def _evaluating(cls: type) -> type:
    """The kept-statistics form of one BatchNorm class (BatchNorm2d, or any other a network family uses)."""
    return type(f"Evaluating{cls.__name__}", (StaysEvaluating, cls), {})


def freeze(module: nn.Module) -> None:
    """No gradient and no update for `module`'s parameters; its BatchNorm layers keep their statistics."""
    for p in module.parameters():
        p.requires_grad_(False)
    for bn in module.modules():
        if isinstance(bn, _BatchNorm):
            keep_statistics(bn)


def keep_statistics(bn: _BatchNorm) -> None:
    if not isinstance(bn, StaysEvaluating):
        bn.__class__ = _evaluating(type(bn))
    bn.eval()


def carry_freezing(single: nn.Module, wide: nn.Module) -> None:
    """Give `wide` (a layer's K-run counterpart) the frozen state of `single`."""
    own = list(single.parameters(recurse=False))
    if own and not any(p.requires_grad for p in own):
        for p in wide.parameters(recurse=False):
            p.requires_grad_(False)
    if isinstance(single, StaysEvaluating) and isinstance(wide, _BatchNorm):
        keep_statistics(wide)
