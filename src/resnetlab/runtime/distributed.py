"""torchrun support: one process per device, data-parallel, only rank 0 writes."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist

from resnetlab.errors import UserError
from resnetlab.runtime.attempt import agree_on_token


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
        # The store torchrun gives (env://), with keys of this attempt only: a group that torchrun restarts must
        # never read the addresses the dead group's ranks left there (gloo would connect to closed ports).
        # The ranks agree on the attempt's prefix themselves (attempt.py says why no torchrun variable can).
        # RESNETLAB_DIST_TIMEOUT (seconds, default torch's 1800): how long forming the group and any collective
        # may wait for a rank before failing the job (and letting torchrun restart it).
        timeout = timedelta(seconds=dist_timeout())
        store, rank, world = next(dist.rendezvous("env://", rank=info.rank, world_size=world, timeout=timeout))
        token = agree_on_token(store, rank, world, timeout)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=rank, world_size=world,
                                store=dist.PrefixStore(f"resnetlab/attempt-{token}/", store), timeout=timeout)
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


def dist_timeout() -> float:
    """RESNETLAB_DIST_TIMEOUT in seconds (default torch's 1800), refused in one line unless a positive number."""
    text = os.environ.get("RESNETLAB_DIST_TIMEOUT", "1800")
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise UserError(f"RESNETLAB_DIST_TIMEOUT={text!r}: give the seconds a rank may wait for the others, a "
                        "positive number (default 1800)")
    return seconds


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
    global left_a_group
    if info.enabled and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()
        left_a_group = True


left_a_group = False  # whether this process left a process group: cli.main.entry then ends it without finalizers
