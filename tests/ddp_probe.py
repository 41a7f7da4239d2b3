"""`resnetlab train` under torchrun, recording per rank what the run did, for tests to compare ranks.

usage: torchrun --nproc_per_node=2 tests/ddp_probe.py REPORT.json [--skew-errors] TRAIN_ARGS...

Each rank writes REPORT.json.rank<r>: the step and a weight digest when the loop begins and ends, and
the (step, lr, warm_done) of every log point. --skew-errors makes rank 1 count every prediction wrong
and rank 0 none, so the ranks' local training errors (100% and 0%) straddle the warm-up bar of 80%;
--skew-evals makes rank 0's validation error improve at every evaluation and rank 1's stall.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import torch

from resnetlab.cli.main import main
from resnetlab.training.metrics import MetricWindow
from resnetlab.training.run import Run


def digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def run() -> int:
    report, args = sys.argv[1], sys.argv[2:]
    skew = "--skew-errors" in args
    if "--skew-evals" in args:  # rank 0's validation error improves at every evaluation, rank 1's never does
        from resnetlab.training import run as run_module

        real_evaluate, evals = run_module.evaluate, []

        def skewed(*a, **k):
            evals.append(1)
            return {**real_evaluate(*a, **k), "top1_error": 1.0 / len(evals) if rank == 0 else 0.5}

        run_module.evaluate = skewed
    args = [a for a in args if a not in ("--skew-errors", "--skew-evals")]
    rank = int(os.environ.get("RANK", "0"))
    record: dict = {"rank": rank, "log_points": []}
    begin, add, close_window, finish = Run.begin, MetricWindow.add, Run.close_window, Run.finish

    def probed_begin(self, path):
        record["begin"] = {"step": self.state.step, "digest": digest(self.model)}
        return begin(self, path)

    def probed_add(self, loss, errors, batch, data_seconds=0.0):
        if skew:
            errors = torch.full_like(errors, batch if rank == 1 else 0)
        return add(self, loss, errors, batch, data_seconds)

    def probed_close_window(self, lr, batch, stop):
        out = close_window(self, lr, batch, stop)
        record["log_points"].append([self.state.step, lr, self.state.warm_done])
        return out

    def probed_finish(self):
        record["end"] = {"step": self.state.step, "digest": digest(self.model)}
        return finish(self)

    Run.begin, Run.close_window, Run.finish = probed_begin, probed_close_window, probed_finish
    MetricWindow.add = probed_add
    rc = main(["train", *args])
    with open(f"{report}.rank{rank}", "w") as f:
        json.dump(record, f)
    return rc


if __name__ == "__main__":
    sys.exit(run())
