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


def cpu_isa() -> str:
    """This CPU's class by what it can compute, as torch dispatches on it: "AMX", "AVX-512 BF16", "AVX-512",
    "AVX2" or "baseline". The model name alone cannot say it: an AVX2-only EPYC and one with AVX-512 BF16
    both call themselves "AMD EPYC", and their bf16 speeds differ tenfold."""
    cpu = getattr(torch, "cpu", None)
    checks = [("AMX", "_is_amx_tile_supported"), ("AVX-512 BF16", "_is_avx512_bf16_supported"),
              ("AVX-512", "_is_avx512_supported"), ("AVX2", "_is_avx2_supported")]
    for name, check in checks:
        try:
            if getattr(cpu, check)():
                return name
        except (AttributeError, RuntimeError):  # an older torch without the check: ask the next one
            continue
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: "")()
    return {"AVX512": "AVX-512", "AVX2": "AVX2"}.get(capability, "baseline")
