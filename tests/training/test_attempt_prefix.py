"""The ranks of one torchrun attempt agree on their store prefix (issue 40.9): two workers whose agents counted
different restarts (a replaced node starts again at 0) still form one group, and a group formed again on a
store that holds a dead group's keys does not read them."""

import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from resnetlab.runtime.attempt import agree_on_token

REPO = Path(__file__).resolve().parents[2]

WORKER = """
import sys, torch
from resnetlab.runtime import distributed
info = distributed.setup("cpu")
total = distributed.all_sum(info, torch.tensor([float(info.rank + 1)]))
distributed.teardown(info)
print("sum", int(total.item()))
"""


def _store() -> dist.TCPStore:
    return dist.TCPStore("127.0.0.1", 0, world_size=1, is_master=True, timeout=timedelta(seconds=30),
                         wait_for_workers=False)


def _pair(store: dist.TCPStore, restart_counts: tuple[str, str]) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(store.port), "TORCHELASTIC_USE_AGENT_STORE": "True", "RESNETLAB_DIST_TIMEOUT": "25",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER], text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE,
                              env={**env, "RANK": str(rank), "LOCAL_RANK": "0", "TORCHELASTIC_RESTART_COUNT": count})
             for rank, count in enumerate(restart_counts)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def test_agents_at_different_restart_counts_form_one_group_twice_on_one_store():
    store = _store()
    # a dead group's leftovers: its nonce, its answer and gloo keys under the prefixes restart counts gave
    store.set("resnetlab/handshake/hello/1", "deadbeef")
    store.set("resnetlab/handshake/welcome/deadbeef", "oldtoken")
    for attempt in ("0", "3"):
        store.set(f"resnetlab/attempt-{attempt}/0/rank_0", "127.0.0.1:1")
    for counts in (("3", "0"), ("3", "0")):     # the same counts again: a restart count names nothing new
        results = _pair(store, counts)
        for result in results:
            assert result.returncode == 0, result.stderr[-2000:]
            assert "sum 3" in result.stdout


def test_a_follower_ignores_an_answer_left_for_an_older_nonce():
    store = _store()
    store.set("resnetlab/handshake/hello/1", "stale")
    store.set("resnetlab/handshake/welcome/stale", "oldtoken")
    timeout = timedelta(seconds=20)
    tokens: dict[int, str] = {}
    clients = [dist.TCPStore("127.0.0.1", store.port, is_master=False, timeout=timeout) for _ in range(3)]
    threads = [threading.Thread(target=lambda r=r: tokens.__setitem__(r, agree_on_token(clients[r], r, 3, timeout)))
               for r in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(tokens) == 3 and len(set(tokens.values())) == 1
    assert tokens[0] != "oldtoken"
