"""torchrun support: one process per device, data-parallel, only rank 0 writes."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device_type: str) -> DistInfo:
    """Join the process group when started by torchrun (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


@contextmanager
def local_main_first(info: DistInfo) -> Iterator[None]:
    """The body runs on local rank 0 first (downloads, extracts, fills the decode cache), then on the
    other ranks of the node, which then find everything in place instead of racing for the same files."""
    if info.enabled and info.local_rank != 0:
        barrier(info)
    try:
        yield
    finally:
        if info.enabled and info.local_rank == 0:
            barrier(info)


def all_sum(info: DistInfo, values: torch.Tensor) -> torch.Tensor:
    """The sum over ranks (the tensor itself in a single process)."""
    if info.enabled:
        values = values.clone()
        dist.all_reduce(values)
    return values


def from_main(info: DistInfo, values: torch.Tensor) -> torch.Tensor:
    """Rank 0's values on every rank (the tensor itself in a single process)."""
    if info.enabled:
        values = values.clone()
        dist.broadcast(values, src=0)
    return values


def teardown(info: DistInfo, clean: bool = True) -> None:
    """Leave the process group. On a clean exit the ranks first wait for each other: a rank that destroyed
    the group and exited while rank 0 was still saving was seen to abort in gloo's shutdown ("terminate
    called without an active exception", exit -6), failing the whole torchrun job. After an error there is
    no waiting: the other ranks may never arrive."""
    if info.enabled and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()
