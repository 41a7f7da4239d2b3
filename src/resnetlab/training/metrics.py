"""The training metrics between two log points: a window over the steps, as torchvision's MetricLogger.

The sums stay device tensors while steps run (no host synchronization); `close` reduces them over the ranks
once per log point, so every rank sees the same training error (and takes the same warm-up decision).
A window interrupted half-way is stored in the checkpoint (RunState.window_*) and reopened on resume, so
a resumed run logs exactly what an uninterrupted one does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from resnetlab.errors import TrainingDiverged
from resnetlab.runtime import distributed
from resnetlab.training.learning_rate import RunState


# A loss this many times above its first logged value (or chance, ln(classes), if larger) is diverging:
# SGD at a sane lr never climbs that far, while --lr 10 reaches 1e4 within a few hundred steps.
EXPLODED = 20.0


@dataclass
class Figures:
    """One closed window, over every rank."""
    loss: float  # mean training loss
    error: float  # training top-1 error
    images_per_s: float
    data_wait: float  # share of the window spent waiting for batches: near 1, the loader starves the device
    seconds: float
    stop: bool  # whether any rank asked to stop


class MetricWindow:
    def __init__(self, device: torch.device, dist: distributed.DistInfo, state: RunState) -> None:
        """Reopen the window `state` carries (zero for a new run), and take it out of the state."""
        self.device, self.dist = device, dist
        loss, errors = _own_share(state, dist)
        self.loss_sum = torch.tensor(loss, device=device)
        self.err_sum = torch.tensor(errors, device=device, dtype=torch.long)
        self.steps = state.window_steps
        state.window_loss, state.window_errors, state.window_steps = 0.0, 0, 0
        self.restart_clock()

    def restart_clock(self) -> None:
        """Time from now: what came before (compiling the step) is not training speed."""
        self.seen, self.start, self.data_seconds = 0, time.perf_counter(), 0.0

    def add(self, loss: torch.Tensor, errors: torch.Tensor, batch: int, data_seconds: float = 0.0) -> None:
        """One finished step (device tensors, no host synchronization); `data_seconds`: the wait for its batch."""
        self.loss_sum += loss
        self.err_sum += errors
        self.steps += 1
        self.seen += batch
        self.data_seconds += data_seconds

    def close(self, batch: int, stop: bool) -> Figures:
        """The window's figures over every rank, with whether any rank asked to stop; its sums start anew (its
        clock when the log point's work is done: `restart_clock`). The only place the host waits for the device
        between evaluations."""
        flag = torch.tensor(float(stop), device=self.device, dtype=torch.float64)
        totals = distributed.all_sum(self.dist, torch.stack([self.loss_sum.double(), self.err_sum.double(), flag]))
        loss_total, err_total, stops = totals.tolist()
        world = self.dist.world_size
        elapsed = time.perf_counter() - self.start
        figures = Figures(loss_total / (self.steps * world), err_total / (self.steps * batch * world),
                          self.seen * world / max(elapsed, 1e-9), min(1.0, self.data_seconds / max(elapsed, 1e-9)),
                          elapsed, stops > 0)
        self.loss_sum.zero_()
        self.err_sum.zero_()
        self.steps = 0
        return figures

    def store(self, state: RunState) -> bool:
        """Keep the open window in `state` for a checkpoint (stopped between log points); False when its loss
        is not finite (nothing worth saving)."""
        # Every rank calls this at the same step (a checkpoint between log points, or a stop they agreed on) and
        # the main process saves what each rank has summed, each reopening its own (_own_share): the same sums in
        # the same order as an uninterrupted run, so the next record is the same to the bit.
        if not self.dist.enabled:
            loss = self.loss_sum.item()
            state.window_loss, state.window_errors = loss, int(self.err_sum.item())
        else:
            rows = torch.zeros(self.dist.world_size, 2, dtype=torch.float64, device=self.device)
            rows[self.dist.rank] = torch.stack([self.loss_sum.double(), self.err_sum.double()])
            per_rank = distributed.all_sum(self.dist, rows).tolist()
            loss = sum(r[0] for r in per_rank)
            state.window_loss, state.window_errors = [r[0] for r in per_rank], [round(r[1]) for r in per_rank]
        if not math.isfinite(loss):
            return False
        state.window_steps = self.steps
        return True


def _own_share(state: RunState, dist: distributed.DistInfo) -> tuple[float, int]:
    """This rank's part of a stored window: its own sums where the checkpoint holds one per rank of a job of
    this size; otherwise the whole on the main process (a checkpoint of one process, or of another world size)
    and nothing on the others, so that close() adds it once, not once per rank."""
    loss, errors = state.window_loss, state.window_errors
    if isinstance(loss, list):
        if dist.enabled and len(loss) == dist.world_size:
            return loss[dist.rank], errors[dist.rank]
        loss, errors = sum(loss), sum(errors)
    return (loss, errors) if dist.is_main or not dist.enabled else (0.0, 0)


def check_divergence(state: RunState, mean_loss: float, lr: float, classes: int, last: Path) -> None:
    """Raise TrainingDiverged when the window's mean loss is not finite or EXPLODED times its start."""
    if not state.first_loss and math.isfinite(mean_loss):
        state.first_loss = mean_loss
    limit = EXPLODED * max(state.first_loss, math.log(classes))
    if math.isfinite(mean_loss) and mean_loss <= limit:
        return
    kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written before it"
    what = (f"became {mean_loss}" if not math.isfinite(mean_loss) else
            f"exploded to {mean_loss:.4g}, over {EXPLODED:g}x its start ({state.first_loss:.3g})")
    raise TrainingDiverged(f"the training loss {what} by iteration {state.step} (lr {lr:g}); {kept}. "
                           "A lower --lr, or a look at the data, may help")
