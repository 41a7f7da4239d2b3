"""The learning-rate schedule: the paper's step schedule, its warm-up rule, the plateau rule, and how
a schedule follows a change of --iters."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from resnetlab.errors import UserError
from resnetlab.models.registry import cifar_depth
from resnetlab.training.config import TrainConfig, base_value, scaled_milestones
from resnetlab.training.optimizers import OPTIMIZERS
from resnetlab.training.schedules import SCHEDULES

# Sec. 4.2: ResNet-110 starts at lr 0.01 "until the training error is below 80%", then goes back to 0.1; the
# paper gives it to the ResNets alone. Plain-110 does not take it, for the reason PLAIN_NO_WARMUP gives (the
# measurements: results/cifar10-16k/plain110-warmup/).
WARMUP_DEPTH = 110
PLAIN_NO_WARMUP = ("No warm-up for plain nets of depth >= 110: the paper gives it to ResNet-110, and plain-110 trains at "
                   "neither lr at first (measured on the 45k CIFAR-10 JPEG images: 89.6% training error, loss 2.305 "
                   "after 500 iterations at lr 0.1; 89.5%, 2.29 after 3,230 at 0.01; chance is 90%, 2.303), so the "
                   "warm-up's 80% bar would never be met and lr 0.01 would replace the schedule's whole lr-0.1 phase.")


@dataclass
class RunState:
    step: int = 0
    warm_done: bool = False
    lr_scale: float = 1.0
    best_val_error: float = math.inf
    evals_since_best: int = 0
    train_seconds: float = 0.0
    compile_seconds: float = 0.0  # spent compiling the step: not counted in train_seconds or images/s
    eval_seconds: float | None = 0.0  # spent evaluating (the loop's main cost beside the step); None: not recorded
    # Training loss/errors summed since the last log point: kept across an interrupt so that the
    # resumed run logs exactly what an uninterrupted one does.
    window_loss: float | list[float] = 0.0  # under torchrun, one sum per rank (metrics.MetricWindow.store)
    window_errors: int | list[int] = 0
    window_steps: int = 0
    first_loss: float = 0.0  # mean loss of the first logged window: the reference for an exploding loss
    # How the steps ran: {"from_iteration", "precision", "mode", "device"}, one entry per change (a run resumed
    # on another machine may continue in another precision; its reports must say so).
    fast_paths: list = field(default_factory=list)


def uses_warmup(cfg: TrainConfig) -> bool:
    if cfg.warmup == "auto":
        depth = cifar_depth(cfg.model)
        return depth is not None and depth >= WARMUP_DEPTH and "resnet" in cfg.model
    return cfg.warmup == "on"


def warming_up(cfg: TrainConfig, state: RunState, warmup: bool) -> bool:
    """In the warm-up: until the training error falls below the bar, and (the paper does not say what happens
    when it never does) at the latest until the first lr milestone, so that a warm-up cannot outlast the
    schedule silently: the run says when it ends that way."""
    return warmup and not state.warm_done and not (cfg.milestones and state.step >= cfg.milestones[0])


# torchvision's references' linear warm-up (LinearLR, --lr-warmup-decay 0.01): the lr starts at 1/100 of the
# schedule's and reaches it after --lr-warmup-iters iterations.
LINEAR_WARMUP_START = 0.01


def linear_warmup(cfg: TrainConfig, step: int) -> float:
    """The factor --lr-warmup-iters puts on the schedule's lr at `step` (1 after the warm-up)."""
    if step >= cfg.lr_warmup_iters:
        return 1.0
    return LINEAR_WARMUP_START + (1 - LINEAR_WARMUP_START) * step / cfg.lr_warmup_iters


def learning_rate(cfg: TrainConfig, state: RunState, warmup: bool) -> float:
    if warming_up(cfg, state, warmup):
        return cfg.warmup_lr
    return SCHEDULES[cfg.schedule].lr(cfg, state.step, state.lr_scale) * linear_warmup(cfg, state.step)


def warmup_over(cfg: TrainConfig, train_error: float) -> bool:
    """The warm-up ends at the first log point whose training error (over every rank) is below the bar."""
    return train_error < cfg.warmup_until_error


def after_evaluation(cfg: TrainConfig, state: RunState, val_error: float) -> bool:
    """Track the best validation error; with the plateau schedule (Sec. 3.4: "divided by 10 when the error
    plateaus") divide the lr after --plateau-patience evaluations without improvement. Returns whether this
    evaluation is the best so far."""
    if val_error < state.best_val_error:
        state.best_val_error, state.evals_since_best = val_error, 0
        return True
    state.evals_since_best += 1
    if SCHEDULES[cfg.schedule].plateau and state.evals_since_best >= cfg.plateau_patience:
        state.lr_scale *= 0.1
        state.evals_since_best = 0
    return False


def extended(cfg: TrainConfig, iters: int, step: int) -> list[int]:
    """The milestones of a run at `step` whose length changes to `iters`, as a fresh run would have them.

    Milestones that were derived from --iters are derived again; explicit ones stay. The change is
    refused when a milestone of either schedule lies at or before `step`: the steps already taken
    would then have followed another schedule than the new one, and no fresh run would match.
    """
    if not SCHEDULES[cfg.schedule].milestones or cfg.milestones != scaled_milestones(cfg.recipe, cfg.iters):
        return list(cfg.milestones)
    new = scaled_milestones(cfg.recipe, iters)
    passed = [m for m in (*cfg.milestones, *new) if m < step]
    if passed and new != cfg.milestones:
        raise UserError(
            f"--iters {iters}: this run is at iteration {step:,}, past the lr milestone {passed[0]:,}, so its "
            f"schedule cannot follow a fresh {iters:,}-iteration run (milestones {_listing(new)}); give the "
            f"milestones explicitly, e.g. --milestones {','.join(str(m) for m in cfg.milestones)}")
    return new


FINETUNE_ITERS = (100, 4000)  # the finetune recipe's bounds on its length in epochs (RECIPES says why)


def with_epochs(cfg: TrainConfig, train_images: int) -> TrainConfig:
    """`cfg` with its length in iterations where given in epochs: ceil(epochs x images / batch), within
    FINETUNE_ITERS for the finetune recipe; milestones the recipe scaled follow, milestones given stay."""
    if cfg.epochs <= 0:
        return cfg
    iters = math.ceil(cfg.epochs * train_images / cfg.batch_size)
    if cfg.recipe == "finetune":
        iters = min(max(iters, FINETUNE_ITERS[0]), FINETUNE_ITERS[1])
    milestones = (scaled_milestones(cfg.recipe, iters) if cfg.milestones == scaled_milestones(cfg.recipe, cfg.iters)
                  else cfg.milestones)
    return replace(cfg, iters=iters, milestones=milestones)


def describe(cfg: TrainConfig, warmup: bool) -> str:
    """The schedule in effect, in one line."""
    drops = SCHEDULES[cfg.schedule].describe(cfg)
    warm = (f"; warm-up at lr {cfg.warmup_lr:g} until the training error is below {cfg.warmup_until_error:.0%}"
            if warmup else "")
    if cfg.lr_warmup_iters:
        warm += f"; linear warm-up from lr x{LINEAR_WARMUP_START:g} over the first {cfg.lr_warmup_iters:,} iterations"
    lr_scale = OPTIMIZERS[cfg.opt].lr_scale  # AdamW's lr: 1/100 of the recipe's SGD lr
    base_lr, base_batch = base_value(cfg.recipe, "lr") * lr_scale, base_value(cfg.recipe, "batch_size")
    for_opt = f" for --opt {cfg.opt}" if lr_scale != 1 else ""
    scaled = (f" ({base_lr:g} x {cfg.batch_size}/{base_batch}: the recipe's lr{for_opt} scaled with the batch; --lr "
              "sets it)"
              if cfg.batch_size != base_batch and math.isclose(cfg.lr, base_lr * cfg.batch_size / base_batch) else "")
    optimizer = "" if cfg.opt == "sgd" else f"{cfg.opt}, "
    decay = f", layer decay {cfg.layer_decay:g}" if cfg.layer_decay else ""
    return (f"recipe {cfg.recipe}; schedule: {cfg.iters:,} iterations of batch {cfg.batch_size}, {optimizer}lr "
            f"{cfg.lr:g}{scaled}{decay} {drops}{warm}")


def _listing(values: list[int]) -> str:
    return ", ".join(f"{v:,}" for v in values) or "none"
