"""Training configuration: the paper's recipes as data, overridden by a TOML file, then by flags, validated.
The settings themselves, and what each is, are in training/settings.py."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from resnetlab.errors import SettingError, UserError
from resnetlab.files import read_small_text
from resnetlab.models.registry import check_name, default_recipe
from resnetlab.models.weights import weights_style
from resnetlab.training.optimizers import OPTIMIZERS
from resnetlab.training.recipes import RECIPES
from resnetlab.training.settings import CHECKS, CHOICES, FIELDS, GROUPS, TrainConfig

__all__ = ["CHOICES", "FIELDS", "GROUPS", "RECIPES", "TrainConfig", "default_recipe", "from_dict", "read_toml",
           "recipe_for", "resolve", "validate"]


# Settings of earlier versions, read from their config.json and checkpoints: retired keys are dropped
# (sync_bn was never used), retired values mapped ("auto" channels_last always meant "on").
RETIRED = ("sync_bn", "fast_path")  # fast_path: what a run used, stored beside its settings, not a setting
RENAMED_VALUES = {"channels_last": {"auto": "on"}}


def upgraded(values: dict[str, Any]) -> dict[str, Any]:
    """A stored configuration of any resnetlab version in this version's keys and values."""
    out = {k: v for k, v in values.items() if k not in RETIRED}
    for key, renames in RENAMED_VALUES.items():
        if isinstance(out.get(key), str) and out[key] in renames:
            out[key] = renames[out[key]]
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """A --config file: TOML (flat, or in the tables of GROUPS), or a run's config.json given back."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--config {path}: a folder, not a TOML file")
    try:
        text = read_small_text(path, "--config", limit=1 << 20)
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise UserError(f"--config {path}: holds a JSON {type(raw).__name__}, not an object of settings")
            values = upgraded(raw)
        else:
            values = flatten(tomllib.loads(text), path)
    except json.JSONDecodeError as e:
        raise UserError(f"--config {path}: not valid JSON ({e})") from None
    except FileNotFoundError:
        raise UserError(f"--config {path}: no such file") from None
    except UnicodeDecodeError:
        raise UserError(f"--config {path}: not a text file (a TOML file of recipe overrides is expected)") from None
    except OSError as e:
        raise UserError(f"--config {path}: cannot read it ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"--config {path}: not valid TOML ({e})") from None
    except RecursionError:
        raise UserError(f"--config {path}: nested too deeply to be a config") from None
    problem = first_problem(values)
    if problem:
        known = f" (known: {', '.join(FIELDS)})" if problem.startswith("unknown key") else ""
        raise UserError(f"--config {path}: {problem}{known}")
    return values


def flatten(values: dict[str, Any], path: Path) -> dict[str, Any]:
    """TOML tables [optimizer], [model], [data], [system] read as the flat settings they hold."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key in GROUPS:
            stray = sorted(set(value) - set(GROUPS[key]))
            if stray:
                raise UserError(f"--config {path}: {stray[0]!r} is not a setting of [{key}] "
                                f"(its settings: {', '.join(GROUPS[key])})")
            flat.update(value)
        elif isinstance(value, dict):
            raise UserError(f"--config {path}: unknown table [{key}] (tables: {', '.join(GROUPS)})")
        else:
            flat[key] = value
    return flat


def first_problem(values: dict[str, Any]) -> str | None:
    """The first key of `values` that is not a TrainConfig field, or whose value has the wrong type."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        return f"unknown key {unknown[0]!r}"
    for key, value in values.items():
        problem = type_problem(key, value)
        if problem:
            return f"{key} = {value!r}: {problem}"
    return None


def type_problem(name: str, value: Any) -> str | None:
    """Why `value` cannot be the field `name` (a TOML value or a stored config.json's), or None."""
    kind = FIELDS[name].type
    if kind in ("int", int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "expected a whole number"
    if kind in ("float", float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok and math.isfinite(value) else "expected a finite number"
    if kind in ("bool", bool):
        return None if isinstance(value, bool) else "expected true or false"
    if kind in ("str", str):
        return None if isinstance(value, str) else "expected a string"
    ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    return None if ok else "expected a list of whole numbers"


def from_dict(values: dict[str, Any], source: str) -> TrainConfig:
    """A stored config (config.json, a checkpoint's) back as a TrainConfig; a damaged one is named."""
    if not isinstance(values, dict):
        raise UserError(f"{source} is damaged: it does not hold a training configuration")
    values = upgraded(values)
    problem = first_problem(values)
    if problem:
        raise UserError(f"{source} is damaged or from another version: {problem}")
    return TrainConfig(**values)


def configure(recipe: str, **settings: Any) -> TrainConfig:
    """A recipe with some settings changed, by keyword (the library's way; a misspelt setting is a TypeError):
    `configure("cifar-paper", model="cifar_resnet56", data=..., out=..., iters=16000)`."""
    unknown = sorted(set(settings) - set(FIELDS))
    if unknown:
        raise TypeError(f"configure: {unknown[0]!r} is not a setting (training/settings.py lists them)")
    return resolve(recipe, {}, settings)


def resolve(recipe: str, file_values: dict[str, Any], flags: dict[str, Any]) -> TrainConfig:
    """recipe < config file < command-line flags; iterations given without milestones rescale them."""
    if recipe not in RECIPES:
        raise UserError(f"--recipe {recipe!r} is not one of {', '.join(RECIPES)}")
    values: dict[str, Any] = {"recipe": recipe, **RECIPES[recipe]}
    values.update(file_values)
    values.update({k: v for k, v in flags.items() if v is not None})
    explicit = {**file_values, **{k: v for k, v in flags.items() if v is not None}}
    if "iters" in explicit and explicit.get("epochs"):
        raise UserError("give the run's length as --iters or as --epochs, not both")
    if "iters" in explicit:
        values["epochs"] = 0.0  # --iters given: the recipe's epochs no longer set the length
    if "iters" in explicit and "milestones" not in explicit:
        values["milestones"] = scaled_milestones(recipe, values["iters"])
    if "iters" in explicit:
        values.update(scaled_with_length(recipe, values["iters"], explicit))
    if "batch_size" in explicit:
        # The linear scaling rule (Goyal et al. 2017; timm's --lr-base-size): the recipe's learning rates were
        # set for its batch, and kept at 0.1 a batch of 6 diverges at once; --lr/--warmup-lr set them outright.
        for name in ("lr", "warmup_lr", "head_lr"):
            if name not in explicit and isinstance(values["batch_size"], int) and values["batch_size"] > 0:
                values[name] = base_value(recipe, name) * values["batch_size"] / base_value(recipe, "batch_size")
    optimizer = OPTIMIZERS.get(values.get("opt", "sgd"))
    if optimizer is not None and optimizer.lr_scale != 1:  # its own defaults where not given (optimizers.py)
        values.update({k: v for k, v in optimizer.defaults.items() if k not in explicit})
        for name in ("lr", "warmup_lr", "head_lr"):
            if name not in explicit:
                values[name] = values.get(name, base_value(recipe, name)) * optimizer.lr_scale
    if values.get("weights"):
        values.update(weights_defaults(values, explicit))
    cfg = TrainConfig(**values)
    validate(cfg)
    return cfg


def weights_defaults(values: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """What starting from --weights changes where neither a flag nor the config file says: the input follows the
    weights whatever the recipe (their per-pixel mean, or ImageNet's mean/std), and the network is built in the
    style the weights were trained as (torchvision's ResNet-50 is v1.5: style torchvision), as create_model does."""
    out: dict[str, Any] = {} if "normalization" in explicit else {"normalization": "weights"}
    # CIFAR nets have one style; ResNet-18/34 with a shortcut given are built as asked
    model = str(values.get("model", TrainConfig.model))
    if "style" not in explicit and not model.startswith("cifar_") and "shortcut" not in explicit:
        style = weights_style(model, str(values["weights"]))
        if style is not None:
            out["style"] = style
    return out


def recipe_for(model: str, weights: str | None) -> str:
    """The recipe a run gets when none is named: finetune when it starts from weights, else the paper's own."""
    return "finetune" if weights else default_recipe(model)


def base_value(recipe: str, name: str) -> Any:
    """The recipe's own value of a field."""
    return RECIPES.get(recipe, {}).get(name, getattr(TrainConfig, name))


def scaled_with_length(recipe: str, iters: int, explicit: dict[str, Any]) -> dict[str, Any]:
    """What a recipe sets as a share of its run, at the same share of `iters` where not given: the linear
    warm-up's length, and the EMA's horizon (1 / (1 - decay) updates)."""
    share, out = iters / base_value(recipe, "iters"), {}
    if "lr_warmup_iters" not in explicit and base_value(recipe, "lr_warmup_iters"):
        out["lr_warmup_iters"] = round(base_value(recipe, "lr_warmup_iters") * share)
    if "model_ema_decay" not in explicit and "model_ema_decay" in RECIPES.get(recipe, {}):
        horizon = share / (1 - base_value(recipe, "model_ema_decay"))
        out["model_ema_decay"] = round(1 - 1 / max(horizon, 1.0), 5)
    return out


def scaled_milestones(recipe: str, iters: int) -> list[int]:
    """The recipe's milestones at the same fractions of `iters` (32k/48k of 64k -> 50%/75%)."""
    base = RECIPES.get(recipe, {})
    base_iters = base.get("iters", TrainConfig.iters)
    base_milestones = base.get("milestones", TrainConfig().milestones)
    return [max(1, round(m * iters / base_iters)) for m in base_milestones]  # --iters 1 has milestone 1, not 0


def validate(cfg: TrainConfig) -> None:
    """Every setting within its bounds (settings.py: each setting's check), then what settings say of each
    other; a bad value is a SettingError naming the setting (each front end renders it in its own terms)."""
    for name, f in FIELDS.items():
        value = getattr(cfg, name)
        if f.type in ("float", float) and not math.isfinite(value):
            raise SettingError(name, value, f"must be a finite number, not {value}")
        if name in CHOICES and value not in CHOICES[name]:
            raise SettingError(name, value, f"{value!r}: choose one of {', '.join(a or '(default)' for a in CHOICES[name])}")
        problem = CHECKS[name](value) if name in CHECKS else None
        if problem:
            raise SettingError(name, value, problem)
    if cfg.normalization == "weights" and not cfg.weights:
        raise SettingError("normalization", cfg.normalization, "weights follows --weights, and none are given: use "
                           "pixel-mean, channel or imagenet, or give --weights")
    if cfg.val == "holdout" and cfg.holdout == 0:
        raise SettingError("val", cfg.val, "holdout needs a hold-out: --holdout must be positive (or use --val none)")
    if cfg.nesterov and (cfg.opt != "sgd" or cfg.momentum == 0):
        raise SettingError("nesterov", True, f"is SGD's momentum of Nesterov: it needs --opt sgd and a --momentum "
                                             f"above 0 (here --opt {cfg.opt}, --momentum {cfg.momentum:g})")
    if cfg.lr_warmup_iters >= cfg.iters:
        raise SettingError("lr_warmup_iters", cfg.lr_warmup_iters, f"must be fewer than the run's {cfg.iters:,} "
                                                                   "iterations")
    check_name(cfg.model)
    _check_out_outside_data(cfg)


def _check_out_outside_data(cfg: TrainConfig) -> None:
    """A run folder inside the dataset would become a class folder of it (and of the run's own resume)."""
    data, out = Path(cfg.data), Path(cfg.out)
    if not cfg.out or not data.is_dir():
        return
    try:
        inside = out.resolve().is_relative_to(data.resolve())
    except (OSError, RuntimeError):
        return
    if inside:
        raise UserError(f"--out {cfg.out} lies inside the dataset --data {cfg.data}: its files would be read as "
                        "data (a class folder); choose a folder outside it")
