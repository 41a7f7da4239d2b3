"""The optimizers a run can use, one entry each (--opt): how it is built from the run's parameter groups, and
what it changes where neither a flag nor the config file says. A new optimizer is one entry here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn


@dataclass(frozen=True)
class Optimizer:
    build: Callable[[list[dict], Any], torch.optim.Optimizer]
    help: str
    # the recipe's learning rates (lr, warmup_lr, head_lr) are multiplied by this where not given
    lr_scale: float = 1.0
    defaults: dict[str, Any] = field(default_factory=dict)  # other settings it changes where not given
    # whether the fast path's self-check knows its update rule (training/probe.py checks SGD's): others run eager
    self_checked: bool = True


OPTIMIZERS: dict[str, Optimizer] = {
    # Sec. 3.4 / 4.2: SGD with momentum 0.9, weight decay 1e-4.
    "sgd": Optimizer(lambda groups, cfg: torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                                                          weight_decay=cfg.weight_decay, nesterov=cfg.nesterov),
                     "SGD with momentum (the paper's; --nesterov: Nesterov's)"),
    # AdamW (Loshchilov & Hutter 2019) with timm's fine-tuning defaults: decoupled weight decay 0.05 and a learning
    # rate 1/100 of SGD's (0.1 -> 1e-3 from scratch; the finetune recipe's 0.01 -> 1e-4, its head 0.1 -> 1e-3),
    # betas (0.9, 0.999); --momentum is not used.
    "adamw": Optimizer(lambda groups, cfg: torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay),
                       "AdamW (timm's defaults: lr 1/100 of the recipe's SGD lr, weight decay 0.05)",
                       lr_scale=0.01, defaults={"weight_decay": 0.05}, self_checked=False),
}


def layer_ids(model: nn.Module) -> dict[str, int]:
    """Each parameter's layer, as timm numbers a ResNet's for layer-wise lr decay: the stem 0, every residual
    block its own layer in order (layer1.0, layer1.1, ...), the classifier last."""
    names = [name.removeprefix("module.") for name, _ in model.named_parameters()]  # DDP's prefix
    blocks: dict[str, int] = {}
    ids = {}
    for name in names:
        block = re.match(r"(layer\d+\.\d+)\.", name)
        if block:
            ids[name] = blocks.setdefault(block.group(1), len(blocks) + 1)
    for name in names:
        ids.setdefault(name, len(blocks) + 1 if name.startswith("fc.") else 0)
    return ids
