"""What a run shows while it trains: the progress bar, each evaluation's line, and the time estimate, on the
main process only (lines through runtime/messages.py)."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from resnetlab.runtime import distributed, messages
from resnetlab.training.expected_speed import duration
from resnetlab.training.run import Run


class Progress:
    """The progress bar, the lines of each evaluation, and the time estimate, on the main process only."""

    def __init__(self, runs: list[Run], dist: distributed.DistInfo, step: int) -> None:
        self.runs, lead = runs, runs[0]
        name = lead.cfg.model if len(runs) == 1 else f"{len(runs)} x {lead.cfg.model}"
        self.bar = tqdm(total=lead.cfg.iters, initial=step, desc=name, unit="it", dynamic_ncols=True,
                        disable=None if dist.is_main and not messages.quiet() else True)
        self.estimated = lead.device.type != "cpu" or not dist.is_main  # said once, on the CPU
        self.main = dist.is_main

    def update(self) -> None:
        self.bar.update(1)

    def write(self, line: str) -> None:
        messages.say(line)

    def show(self, records: list[dict[str, Any]]) -> None:
        first = records[0]
        self.bar.set_postfix(loss=f"{first['train_loss']:.3f}", err=f"{first['train_error']:.1%}",
                             lr=f"{first['lr']:g}", img_s=f"{first['images_per_s']:,.0f}", data=f"{first['data_wait']:.0%}")
        # Without a bar (stdout a file or a pipe: a log, nohup, SLURM) every log point is a line, as timm's
        # train.py logs; with one, the bar shows them and only evaluations are lines.
        lines_only = self.main and self.bar.disable and not messages.quiet()
        for run, record in zip(self.runs, records):
            if "val_error" in record or lines_only:
                self.write(("" if len(self.runs) == 1 else f"[seed {run.cfg.seed}] ") + run.line(record))
        lead, step = self.runs[0], first["iteration"]
        if not self.estimated and step < lead.cfg.iters:
            self.estimated = True
            self.write(_estimate(lead, step, sum(r["images_per_s"] for r in records)))

    def close(self) -> None:
        self.bar.close()


def _estimate(run: Run, step: int, images_per_s: float) -> str:
    cfg = run.cfg
    seconds = (cfg.iters - step) * cfg.batch_size / images_per_s
    return (f"at {images_per_s:,.0f} images/s on this machine the remaining {cfg.iters - step:,} iterations take about "
            f"{duration(seconds)}; --iters N shortens the run (the lr milestones scale with it), and Ctrl-C stops it "
            f"resumably (--resume {cfg.out})")
