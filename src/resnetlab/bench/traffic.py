"""Bytes as well as FLOPs: the machine's memory bandwidth, measured, and the bytes a training step moves, counted
per ATen op, so that the roofline has both of its ceilings.

The bandwidth is measured in the same run as the peaks, on the same threads: a copy (2 bytes moved per byte) and a
STREAM triad a = b + s*c (3 per byte) of buffers far larger than the caches, in the step's precision. The bytes are
counted the way FlopCounterMode counts FLOPs, by a TorchDispatchMode over one whole step (forward, backward, SGD):
each op reads its tensor inputs once and writes its outputs once. That is the traffic of unfused eager execution,
where every op's result goes to memory and is read back by the next one; fusing BatchNorm, ReLU and the add removes
exactly those round trips, and the counted bytes say how much there is to remove. Views move nothing and are skipped.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from resnetlab.bench.timing import seconds_per_call

# How the ATen ops of a step are grouped (first match wins; the rest is "other"): the profile and the bytes
# share these names.
OP_KINDS = [
    ("convolution", ("conv",)),
    ("batch norm", ("batch_norm",)),
    ("ReLU", ("relu", "threshold", "clamp_min")),
    ("loss and classifier", ("softmax", "nll_loss", "cross_entropy", "addmm", "mm", "avg_pool", "mean")),
    ("SGD", ("_foreach",)),
    ("adds, copies, layout", ("add", "copy", "clone", "contiguous", "pad", "cat", "slice", "reorder", "fill_",
                              "zero_", "empty", "to_copy", "mul")),
]
ALLOCATIONS = ("empty", "zeros", "ones", "full", "scalar_tensor", "new_empty")  # no traffic until written
WRITE_ONLY = ("fill_", "zero_")  # their input is overwritten, not read


def kind_of(op_name: str) -> str:
    return next((kind for kind, words in OP_KINDS if any(w in op_name for w in words)), "other")


def _bytes(t: torch.Tensor) -> int:
    """What reading t once moves: its elements, but never more than its storage (an expanded view repeats one)."""
    try:
        return min(t.numel() * t.element_size(), t.untyped_storage().nbytes())
    except (RuntimeError, NotImplementedError):
        return t.numel() * t.element_size()


class OpTraffic(TorchDispatchMode):
    """Bytes read and written per ATen op name, counted over what runs inside the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: dict[str, list[int]] = {}  # op name -> [bytes read, bytes written]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.name().split("::")[-1]
        if func.is_view or any(name.startswith(a) for a in ALLOCATIONS):
            return out
        reads = 0 if any(w in name for w in WRITE_ONLY) else sum(
            _bytes(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor))
        written = sum(_bytes(t) for t in tree_leaves(out) if isinstance(t, torch.Tensor))
        totals = self.ops.setdefault(name, [0, 0])
        totals[0] += reads
        totals[1] += written
        return out


def count_step(step: Callable[[], object]) -> dict:
    """FLOPs and bytes of one call of `step` (a whole training step), in total and per kind of op:
    {"flops", "bytes", "kinds": {kind: {"flops", "bytes"}}}."""
    traffic = OpTraffic()
    with FlopCounterMode(display=False) as flops, traffic:
        step()
    kinds: dict[str, dict[str, float]] = {}
    for name, (reads, written) in traffic.ops.items():
        k = kinds.setdefault(kind_of(name), {"flops": 0.0, "bytes": 0.0})
        k["bytes"] += reads + written
    for op, count in flops.get_flop_counts().get("Global", {}).items():
        k = kinds.setdefault(kind_of(str(op).split(".")[-1]), {"flops": 0.0, "bytes": 0.0})
        k["flops"] += count
    return {"flops": sum(k["flops"] for k in kinds.values()), "bytes": sum(k["bytes"] for k in kinds.values()),
            "kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1]["bytes"]))}


def bandwidth(dtype: torch.dtype, mib: int = 256, min_seconds: float = 0.5) -> dict[str, float]:
    """GB/s of a copy and of a triad over buffers of `mib` MiB each (far beyond the caches) on this process's
    threads: {"copy", "triad", "bandwidth": the larger}."""
    n = mib * (1 << 20) // torch.tensor([], dtype=dtype).element_size()
    a, b, c = (torch.ones(n, dtype=dtype) for _ in range(3))
    size = n * a.element_size()
    copy = 2 * size / seconds_per_call(lambda: a.copy_(b), min_seconds) / 1e9
    triad = 3 * size / seconds_per_call(lambda: torch.add(b, c, alpha=2.0, out=a), min_seconds) / 1e9
    return {"copy": copy, "triad": triad, "bandwidth": max(copy, triad)}


def bound(counted: dict, peak_gflops: float, bandwidth_gbs: float) -> dict:
    """The roofline's bound on one step: max(FLOPs / peak, bytes / bandwidth) for the whole step, the tighter sum
    of that bound over the kinds of op (each kind waits for its own ceiling), and which ceiling binds each kind."""
    def seconds(flops: float, nbytes: float) -> tuple[float, float]:
        return flops / (peak_gflops * 1e9), nbytes / (bandwidth_gbs * 1e9)

    whole = max(seconds(counted["flops"], counted["bytes"]))
    per_kind, by = 0.0, {}
    for kind, k in counted["kinds"].items():
        compute, memory = seconds(k["flops"], k["bytes"])
        per_kind += max(compute, memory)
        by[kind] = "compute" if compute > memory else "memory"
    return {"bound_seconds": whole, "bound_seconds_per_kind": per_kind, "bound_by": by}
