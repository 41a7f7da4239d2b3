"""Training configuration: the paper's recipes as data, overridden by a TOML file, then by flags."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from resnetlab.errors import UserError


@dataclass
class TrainConfig:
    model: str = "cifar_resnet20"
    data: str = "cifar10"
    recipe: str = "cifar-paper"
    out: str = ""
    # optimization (Sec. 3.4 / 4.2)
    iters: int = 64000
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"  # "step": divide by 10 at milestones; "plateau": when validation error stalls
    milestones: list[int] = field(default_factory=lambda: [32000, 48000])
    plateau_patience: int = 3  # evaluations without improvement before lr /= 10
    warmup: str = "auto"  # "auto" (on for CIFAR depth >= 110, as the paper), "on", "off"
    warmup_lr: float = 0.01
    warmup_until_error: float = 0.8
    # model options
    shortcut: str = ""  # "" = the paper's default for the network
    style: str = "paper"
    zero_init_residual: bool = False
    # data
    normalization: str = "pixel-mean"  # "pixel-mean" (paper), "channel", "imagenet"
    holdout: int = 5000
    val: str = "auto"  # "auto": the test split if the data has one, else the hold-out; "holdout", "test", "none"
    workers: int = 4
    skip_corrupt: bool = False
    # bookkeeping
    eval_every: int = 1000
    log_every: int = 100
    save_every: int = 0  # 0: checkpoint at each evaluation only
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # "auto": bf16 on CUDA, off on CPU
    channels_last: str = "auto"
    compile: str = "off"
    sync_bn: bool = False
    tensorboard: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


RECIPES: dict[str, dict[str, Any]] = {
    # Sec. 4.2: batch 128, lr 0.1 /10 at 32k and 48k, 64k iterations, wd 1e-4, momentum 0.9.
    "cifar-paper": {},
    # Sec. 3.4: batch 256, lr 0.1 /10 when the error plateaus, up to 600k iterations.
    "imagenet-paper": {
        "batch_size": 256, "iters": 600000, "schedule": "plateau", "milestones": [],
        "eval_every": 5000, "normalization": "imagenet", "holdout": 0, "warmup": "off",
    },
}
CHOICES = {
    "schedule": ("step", "plateau"), "warmup": ("auto", "on", "off"), "style": ("paper", "torchvision"),
    "shortcut": ("", "A", "B", "C"), "normalization": ("pixel-mean", "channel", "imagenet"),
    "val": ("auto", "holdout", "test", "none"), "device": ("auto", "cpu", "cuda"),
    "amp": ("auto", "bf16", "fp16", "off"), "channels_last": ("auto", "on", "off"),
    "compile": ("off", "default", "reduce-overhead", "max-autotune"),
}
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        values = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"--config {path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"--config {path}: not valid TOML ({e})") from None
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise UserError(f"--config {path}: unknown key {unknown[0]!r} (known: {', '.join(FIELDS)})")
    return values


def resolve(recipe: str, file_values: dict[str, Any], flags: dict[str, Any]) -> TrainConfig:
    """recipe < config file < command-line flags; iterations given without milestones rescale them."""
    if recipe not in RECIPES:
        raise UserError(f"--recipe {recipe!r} is not one of {', '.join(RECIPES)}")
    values: dict[str, Any] = {"recipe": recipe, **RECIPES[recipe]}
    base_iters = values.get("iters", TrainConfig.iters)
    base_milestones = values.get("milestones", TrainConfig().milestones)
    values.update(file_values)
    values.update({k: v for k, v in flags.items() if v is not None})
    explicit = {**file_values, **{k: v for k, v in flags.items() if v is not None}}
    if "iters" in explicit and "milestones" not in explicit:
        values["milestones"] = [round(m * values["iters"] / base_iters) for m in base_milestones]
    cfg = TrainConfig(**values)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise UserError(f"--{name.replace('_', '-')} {getattr(cfg, name)!r}: choose one of {', '.join(a or '(default)' for a in allowed)}")
    positive = ("iters", "batch_size", "eval_every", "log_every")
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be a positive whole number, not {getattr(cfg, name)}")
    for name in ("lr", "warmup_lr"):
        if not 0 < getattr(cfg, name) <= 10:
            raise UserError(f"--{name.replace('_', '-')} must be in (0, 10], not {getattr(cfg, name)}")
    if not 0 <= cfg.momentum < 1:
        raise UserError(f"--momentum must be in [0, 1), not {cfg.momentum}")
    if cfg.weight_decay < 0 or cfg.holdout < 0 or cfg.save_every < 0 or cfg.workers < 0:
        raise UserError("--weight-decay, --holdout, --save-every and --workers cannot be negative")
    if sorted(cfg.milestones) != cfg.milestones or any(m <= 0 for m in cfg.milestones):
        raise UserError(f"--milestones must be increasing positive iterations, not {cfg.milestones}")

