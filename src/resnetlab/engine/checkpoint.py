"""Checkpoints: written atomically (a crash mid-write leaves the previous file), read without pickles."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from resnetlab.models.weights import read_checkpoint

FORMAT = "resnetlab-checkpoint-v1"


def atomic_write(path: Path, write: Any) -> None:
    """Call write(tmp_path), fsync, then rename over `path`: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **payload}, tmp))


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A resnetlab checkpoint (model, optimizer, step, RNG, config, classes, normalization)."""
    from resnetlab.errors import UserError

    ckpt = read_checkpoint(path)
    if ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a resnetlab training checkpoint (use --model and --weights for "
                        "foreign weights)")
    return ckpt
