"""`resnetlab train` under torchrun, recording per rank what the run did, for tests to compare ranks.

usage: torchrun --nproc_per_node=2 tests/ddp_probe.py REPORT.json [--skew-errors] TRAIN_ARGS...

Each rank writes REPORT.json.rank<r>: the step and a weight digest when the loop begins and ends, and
the (step, lr, warm_done) of every log point. --skew-errors makes rank 1 count every prediction wrong
and rank 0 none, so the ranks' local training errors (100% and 0%) straddle the warm-up bar of 80%.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import torch

from resnetlab.cli.main import main
from resnetlab.engine import trainer as T


def digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def run() -> int:
    report, args = sys.argv[1], sys.argv[2:]
    skew = "--skew-errors" in args
    args = [a for a in args if a != "--skew-errors"]
    rank = int(os.environ.get("RANK", "0"))
    record: dict = {"rank": rank, "log_points": []}
    begin, account, finish = T.Trainer.begin, T.Trainer.account, T.Trainer.finish

    def probed_begin(self, *a, **kw):
        record["begin"] = {"step": self.state.step, "digest": digest(self.model)}
        return begin(self, *a, **kw)

    def probed_account(self, loss, errors, batch, lr, end, sync=None, stop=False):
        if skew:
            errors = torch.full_like(errors, batch if rank == 1 else 0)
        out = account(self, loss, errors, batch, lr, end, sync=sync, stop=stop)
        if self.state.step % self.cfg.log_every == 0:
            record["log_points"].append([self.state.step, lr, self.state.warm_done])
        return out

    def probed_finish(self):
        record["end"] = {"step": self.state.step, "digest": digest(self.model)}
        return finish(self)

    T.Trainer.begin, T.Trainer.account, T.Trainer.finish = probed_begin, probed_account, probed_finish
    rc = main(["train", *args])
    with open(f"{report}.rank{rank}", "w") as f:
        json.dump(record, f)
    return rc


if __name__ == "__main__":
    sys.exit(run())
