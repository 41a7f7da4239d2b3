"""The learning-rate schedules, by name: each a small pure function of the run's settings and progress.

    lr = SCHEDULES[cfg.schedule].lr(cfg, step, lr_scale)

A new schedule is one decorated function here (its name becomes a choice of --schedule, its help the flag's
text); the warm-up (training/learning_rate.py) comes before any of them. `milestones`: whether the schedule reads
--milestones (then a resumed run's milestones follow a change of --iters); `plateau`: whether evaluations
lower the lr (the plateau rule's `lr_scale`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Schedule:
    lr: Callable[[Any, int, float], float]  # (config, iteration, the plateau rule's scale) -> lr
    describe: Callable[[Any], str]  # the lr's course after its start, for the start-up line
    help: str
    milestones: bool = False
    plateau: bool = False


SCHEDULES: dict[str, Schedule] = {}


def schedule(name: str, help: str, describe: Callable[[Any], str], milestones: bool = False,
             plateau: bool = False) -> Callable:
    def register(lr: Callable[[Any, int, float], float]) -> Callable:
        SCHEDULES[name] = Schedule(lr, describe, help, milestones, plateau)
        return lr

    return register


def _listing(values: list[int]) -> str:
    return ", ".join(f"{v:,}" for v in values) or "none"


@schedule("step", "divide by 10 at --milestones (Sec. 3.4, 4.2)", milestones=True,
          describe=lambda cfg: f"divided by 10 at iterations {_listing(cfg.milestones)}" if cfg.milestones else "constant")
def step_lr(cfg: Any, step: int, scale: float) -> float:
    return cfg.lr / 10 ** sum(step >= m for m in cfg.milestones)


@schedule("plateau", "divide by 10 when the validation error stalls for --plateau-patience evaluations (Sec. 3.4)",
          plateau=True, describe=lambda cfg: f"divided by 10 after {cfg.plateau_patience} evaluations without "
                                             "improvement")
def plateau_lr(cfg: Any, step: int, scale: float) -> float:
    return cfg.lr * scale


@schedule("cosine", "half a cosine from --lr to 0 over --iters (Loshchilov & Hutter 2017; torchvision's references)",
          describe=lambda cfg: "following half a cosine to 0 at the last iteration")
def cosine_lr(cfg: Any, step: int, scale: float) -> float:
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(step, cfg.iters) / cfg.iters))
