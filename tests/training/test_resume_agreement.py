"""Under torchrun every rank reads last.pt itself; with a stale view of shared storage one rank could start at
another iteration (issue 40.8). The ranks compare their start with rank 0's and refuse together."""

import socket
from types import SimpleNamespace

import torch
import torch.multiprocessing as mp
from torch import nn


def _worker(rank: int, port: int, steps: list[int], results) -> None:
    import torch.distributed as dist

    from resnetlab.errors import UserError
    from resnetlab.runtime.distributed import DistInfo
    from resnetlab.training.loop import agree_on_start

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.manual_seed(0)
    run = SimpleNamespace(state=SimpleNamespace(step=steps[rank]), model=nn.Linear(3, 2))
    try:
        agree_on_start([run], DistInfo(rank, 2, rank), torch.device("cpu"))
        results.put((rank, "agreed"))
    except UserError as e:
        results.put((rank, str(e)))
    dist.destroy_process_group()


def _ranks(steps: list[int]) -> dict[int, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, port, steps, results)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    return got


def test_ranks_that_read_other_checkpoints_refuse_together_and_agreeing_ones_go_on():
    assert _ranks([400, 400]) == {0: "agreed", 1: "agreed"}
    apart = _ranks([400, 200])  # rank 1's storage still shows an older last.pt
    assert all("do not start from the same checkpoint" in text for text in apart.values())
    assert "rank 1: iteration 200, rank 0: 400" in apart[1]
