"""Weight averagers registered with the training step: each keeps averaged copies of the network's weights and
BatchNorm statistics, updated after the steps it chooses. They are part of the step's state (training/step.py:
`state_tensors`, so the self-check undoes their update too), of every checkpoint (`averaged` in last.pt), of a
resume and of seeds trained together (the average of a stacked network is the stack of the runs' averages),
and of what evaluate, predict and export load (inference/load.py). A new averager is one class and one
AVERAGERS line.
"""

from __future__ import annotations

from copy import deepcopy as copy_module
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from resnetlab.runtime.checkpoint import with_averaged


class ModelEMA:
    """An exponential moving average of the weights and BatchNorm statistics (torchvision's references:
    ExponentialMovingAverage with use_buffers=True), updated every `every` steps:
    average = decay * average + (1 - decay) * weights. It starts as a copy of the weights (the first update of
    torchvision's, which copies)."""

    name = "ema"

    def __init__(self, net: nn.Module, decay: float, every: int) -> None:
        self.decay, self.every = decay, every
        live = net.state_dict(keep_vars=True)
        self.live = {k: v.detach() for k, v in live.items() if v.is_floating_point()}
        self.average = {k: v.detach().clone() for k, v in self.live.items()}

    def tensors(self) -> list[Tensor]:
        return list(self.average.values())

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """After the step that makes `step` steps done."""
        if step % self.every == 0:
            torch._foreach_lerp_(list(self.average.values()), list(self.live.values()), 1.0 - self.decay)

    def describe(self) -> str:
        return f"an EMA of the weights (decay {self.decay:g} every {self.every} step{'s' * (self.every > 1)})"


@dataclass(frozen=True)
class AveragerKind:
    enabled: Callable[[Any], bool]  # whether a run's settings ask for it
    build: Callable[[nn.Module, Any], ModelEMA]


AVERAGERS: dict[str, AveragerKind] = {
    "ema": AveragerKind(lambda cfg: cfg.model_ema, lambda net, cfg: ModelEMA(net, cfg.model_ema_decay, cfg.model_ema_steps)),
}


def build(net: nn.Module, cfg: Any) -> list[ModelEMA]:
    """The averagers `cfg` asks for, over `net` (a run's model, or K runs' stacked network)."""
    return [kind.build(net, cfg) for kind in AVERAGERS.values() if kind.enabled(cfg)]


def averaged_model(model: nn.Module, averaged: dict[str, Tensor]) -> nn.Module:
    """A copy of `model` holding the averaged weights (for evaluation: the model itself keeps training)."""
    copy = copy_module(model)
    copy.load_state_dict(with_averaged(model.state_dict(), averaged))
    return copy
