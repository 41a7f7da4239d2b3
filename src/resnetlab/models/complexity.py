"""Parameters and multiply-accumulates, counted by torch.utils.flop_counter on a real forward pass."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int) -> int:
    """Multiply-accumulates of one image (the paper's "FLOPs (multiply-adds)")."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        # "meta" tensors would be free, but BN/pooling do not run on them for every torch version.
        model(torch.zeros(1, 3, input_size, input_size))
    model.train(was_training)
    return counter.get_total_flops() // 2  # the counter reports 2 FLOPs per multiply-add
