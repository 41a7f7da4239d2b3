"""One key prefix per torchrun attempt, agreed by the ranks themselves.

torchrun's agents keep the workers' store alive across restarts, so the keys a dead group left behind (gloo's
addresses, the start barrier's counters) are still there when the next group forms; each attempt needs keys of
its own. TORCHELASTIC_RESTART_COUNT cannot name them: each agent counts its own restarts, and a node that
replaced a failed one starts again at 0, so the ranks would pick different prefixes (the group never forms) or
an old one (stale keys). Nothing torchrun exports is shared and new in every round, so the ranks agree on a
token through the store itself, with keys that are named by fresh random values and so cannot be stale:

1. every rank but 0 writes a fresh nonce under ``hello/<rank>`` and waits for ``welcome/<nonce>``;
2. rank 0 draws the attempt's token and answers every nonce it reads at ``hello/<rank>`` (an old one from a
   dead attempt is answered too, harmlessly: nobody waits for it) until each rank acknowledges at
   ``ack/<token>/<rank>``, which only a rank that read this attempt's token can write.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import torch.distributed as dist

from resnetlab.errors import UserError

BASE = "resnetlab/handshake/"
POLL_SECONDS = 0.05


def agree_on_token(store: dist.Store, rank: int, world: int, timeout: timedelta) -> str:
    """The token every rank of this attempt returns, a new one in every attempt."""
    if rank == 0:
        return _lead(store, world, timeout)
    return _follow(store, rank, timeout)


def _lead(store: dist.Store, world: int, timeout: timedelta) -> str:
    token = uuid.uuid4().hex
    deadline = time.monotonic() + timeout.total_seconds()
    answered: dict[int, str] = {}
    waiting = set(range(1, world))
    while waiting:
        for rank in sorted(waiting):
            if store.check([f"{BASE}hello/{rank}"]):
                nonce = store.get(f"{BASE}hello/{rank}").decode()
                if answered.get(rank) != nonce:
                    store.set(f"{BASE}welcome/{nonce}", token)
                    answered[rank] = nonce
            if store.check([f"{BASE}ack/{token}/{rank}"]):
                waiting.discard(rank)
        if waiting and time.monotonic() > deadline:
            raise UserError(f"ranks {sorted(waiting)} did not join within RESNETLAB_DIST_TIMEOUT="
                            f"{timeout.total_seconds():g} s: are all nodes started with the same --nnodes and "
                            "rendezvous endpoint?")
        if waiting:
            time.sleep(POLL_SECONDS)
    return token


def _follow(store: dist.Store, rank: int, timeout: timedelta) -> str:
    nonce = uuid.uuid4().hex
    store.set(f"{BASE}hello/{rank}", nonce)
    try:
        store.wait([f"{BASE}welcome/{nonce}"], timeout)
    except (RuntimeError, dist.DistStoreError) as error:
        raise UserError(f"rank 0 did not answer rank {rank} within RESNETLAB_DIST_TIMEOUT="
                        f"{timeout.total_seconds():g} s ({error})") from error
    token = store.get(f"{BASE}welcome/{nonce}").decode()
    store.set(f"{BASE}ack/{token}/{rank}", "1")
    return token
