"""Checkpoints: written atomically (a crash mid-write leaves the previous file), read without pickles."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from resnetlab.errors import UserError
from resnetlab.models.weights import read_checkpoint

FORMAT = "resnetlab-checkpoint-v1"
# What evaluate/predict/export need; a resumed run needs TRAINING_KEYS as well.
MODEL_KEYS = ("model", "model_name", "model_options", "classes", "normalization", "input")
TRAINING_KEYS = ("optimizer", "scaler", "state", "rng", "config")


def atomic_write(path: Path, write: Any) -> None:
    """Call write(tmp_path), fsync, rename over `path`, fsync the folder: readers see the old file or the new
    one, and after a power loss the new one is there once this returns.

    The temporary file is created exclusively under an unpredictable name in the target folder (a link planted
    there cannot redirect the write), ending in `path`'s own suffix (exporters name side files after it), and
    the rename replaces a link at `path` rather than following it. A failed write (a full disk, a vanished
    folder) leaves `path` as it was and says so in one line.
    """
    path = Path(path)
    tmp = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except (OSError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and "write" not in str(e).lower():
            raise  # not an I/O failure (torch.save reports those as RuntimeError)
        full = getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e)
        why = "the disk is full" if full else (getattr(e, "strerror", None) or str(e).splitlines()[0])
        kept = f"{path} keeps its previous contents" if path.exists() else f"{path} was not written"
        raise UserError(f"cannot write {path}: {why}; {kept}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def fsync_folder(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **payload}, tmp))


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def load_checkpoint(path: str | Path, training: bool = False) -> dict[str, Any]:
    """A resnetlab checkpoint (model, optimizer, step, RNG, config, classes, normalization).

    training=True also requires what resuming needs. A file lacking a key is named, never a KeyError.
    """
    ckpt = read_checkpoint(path)
    if ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a resnetlab training checkpoint (use --model and --weights for "
                        "foreign weights)")
    missing = [k for k in (*MODEL_KEYS, *(TRAINING_KEYS if training else ())) if k not in ckpt]
    if missing:
        raise UserError(f"{path} is damaged or incomplete: it has no {missing[0]!r} entry")
    return ckpt
