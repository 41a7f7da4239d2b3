"""Checkpoints: written atomically (a crash mid-write leaves the previous file), read without pickles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from resnetlab.errors import UserError
from resnetlab.files import atomic_write
from resnetlab.models.safetensors_files import FORMAT as SAFETENSORS_FORMAT
from resnetlab.models.weights import read_checkpoint

FORMAT = "resnetlab-checkpoint-v1"
# What evaluate/predict/export need; a resumed run needs TRAINING_KEYS as well.
MODEL_KEYS = ("model", "model_name", "model_options", "classes", "normalization", "input")
TRAINING_KEYS = ("optimizer", "scaler", "state", "rng", "config")


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **payload}, tmp))


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def load_checkpoint(path: str | Path, training: bool = False) -> dict[str, Any]:
    """A resnetlab checkpoint (model, optimizer, step, RNG, config, classes, normalization).

    training=True also requires what resuming needs. A file lacking a key is named, never a KeyError.
    """
    ckpt = read_checkpoint(path)
    if ckpt.get("format") == SAFETENSORS_FORMAT and training:
        raise UserError(f"{path} holds weights alone (safetensors), not a run to resume: give it as --weights "
                        "to start a new run from it")
    if ckpt.get("format") not in (FORMAT, SAFETENSORS_FORMAT):
        raise UserError(f"{path} is not a resnetlab training checkpoint (use --model and --weights for "
                        "foreign weights)")
    missing = [k for k in (*MODEL_KEYS, *(TRAINING_KEYS if training else ())) if k not in ckpt]
    if missing:
        raise UserError(f"{path} is damaged or incomplete: it has no {missing[0]!r} entry")
    return ckpt


def with_averaged(state: dict[str, Tensor], averaged: dict[str, Tensor]) -> dict[str, Tensor]:
    """A model's state dict with a checkpoint's averaged tensors (its `averaged` entry: --model-ema) in place of
    its own; integer buffers (BatchNorm's batch counts) are kept."""
    return {k: averaged.get(k, v) for k, v in state.items()}
