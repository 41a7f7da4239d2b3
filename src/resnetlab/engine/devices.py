"""Which device a command runs on: the one rule, for training, evaluation and every command."""

from __future__ import annotations

import torch

from resnetlab.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """"auto": CUDA when available, else the CPU; "cuda" where there is none is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here (use --device cpu)")
    if name not in DEVICES:
        raise UserError(f"--device {name!r}: choose one of {', '.join(DEVICES)}")
    return torch.device(name)
