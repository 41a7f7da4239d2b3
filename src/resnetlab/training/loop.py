"""The training loop: one loop for one run or K runs trained together, iteration-based as the paper counts.

Batch i of a run is a pure function of (seed, i) (see data.device_loader), the model has no randomness,
and a checkpoint carries model, optimizer, schedule and metric-window state: resuming from step k replays
steps k.. exactly. SIGINT/SIGTERM stop the loop after the step in progress, which is then saved.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import torch

from resnetlab.errors import RunInterrupted, UserError
from resnetlab.multiseed import check_together
from resnetlab.runtime import distributed, memory, messages
from resnetlab.runtime.checkpoint import load_checkpoint
from resnetlab.runtime.devices import resolve_device
from resnetlab.training import fastcheck, fastpath, start
from resnetlab.training.config import TrainConfig, validate
from resnetlab.training.progress import Progress
from resnetlab.training.run import Run
from resnetlab.training.settings import TOGETHER_SAME
from resnetlab.training.step import TrainingStep


class StopSignals:
    """SIGINT and SIGTERM ask the loop to stop after the step in progress; a second SIGINT stops at once."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> "StopSignals":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave the defaults alone
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _StopRequested(Exception):
    pass


def prepare(configs: list[TrainConfig], resume: bool = False) -> tuple[list[Run], TrainingStep]:
    """The runs of `configs` (restored when resuming) and the train_step that trains them."""
    for cfg in configs:
        validate(cfg)
    first = configs[0]
    device = resolve_device(first.device)
    dist = distributed.setup(device.type)
    if len(configs) > 1:
        check_together(configs, dist.enabled, TOGETHER_SAME)
    start.check_start_options(first, len(configs))
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    else:
        memory.keep_freed_memory()  # 1.04-1.07x on the CPU: no page faults for the step's activations
    # channels_last helps on both: 460 vs 401 images/s for ResNet-20 on 2 CPU cores (benchmarks/results).
    channels_last = first.channels_last != "off"
    runs = [Run(cfg, resume, device, dist, channels_last) for cfg in configs]
    agree_on_start(runs, dist, device)
    lead = runs[0]
    recorded = lead.state.fast_paths[-1]["precision"] if lead.state.fast_paths else None
    first = lead.cfg  # its length now in iterations (--epochs are counted once the data is open)
    path = fastpath.choose(first, device, len(runs), recorded)
    train_step = TrainingStep(runs, path)
    say = messages.say if dist.is_main else (lambda line: None)
    batches = [run.data.batch(lead.state.step) for run in runs]
    seconds, found = fastcheck.settle(train_step, fastpath.fallbacks(first, path), batches, [run.lr for run in runs], say)
    for run in runs:
        run.state.compile_seconds += seconds
    if device.type == "cuda":
        fastpath.configure_cuda(train_step.path.amp)
    train_step.self_check = found
    for line in found:
        say(f"self-check: {line}")
    say(f"fast path: {train_step.path.why}")
    if dist.enabled:
        say(f"data-parallel: {dist.world_size} processes ({torch.distributed.get_backend()}), each computing "
            f"{first.batch_size // dist.world_size} of the {first.batch_size} images of a step (BatchNorm's "
            "statistics per process, as in the paper's multi-GPU training)")
    return runs, train_step


def agree_on_start(runs: list[Run], dist: distributed.DistInfo, device: torch.device) -> None:
    """Under torchrun each rank reads last.pt itself: with a stale view of shared storage (an NFS attribute
    cache) one could start at another iteration, and DDP would copy rank 0's weights while the momentum, lr and
    batch index differed, then hang. Every rank compares its iteration and a checksum of its weights with rank
    0's, and all refuse together on a difference."""
    if not dist.enabled:
        return
    mine = torch.tensor([[float(r.state.step), sum(float(t.double().sum()) for t in r.model.state_dict().values()
                                                    if t.is_floating_point())] for r in runs],
                        dtype=torch.float64, device=device)
    main = distributed.from_main(dist, mine)
    apart = distributed.all_sum(dist, (mine != main).any().double().reshape(1)).item() > 0
    if apart:
        raise UserError(f"the ranks do not start from the same checkpoint (rank {dist.rank}: iteration "
                        f"{int(mine[0, 0]):,}, rank 0: {int(main[0, 0]):,}, or other weights): is the run folder's "
                        "storage shared and up to date on every node? Start the job again once it is")


def train_runs(configs: list[TrainConfig], resume: bool = False, stop_after: int | None = None,
               teardown: bool = True, quiet: bool = False) -> list[dict[str, Any]]:
    """Train the runs of `configs` together (one run: the common case); teardown=False keeps a torchrun
    process group for a caller that trains several runs in one job; quiet: no lines, no bar (errors only)."""
    # Under torchrun the main process speaks for all (the others would print every line again).
    with messages.printed(quiet or os.environ.get("RANK", "0") != "0"):
        return _train_runs(configs, resume, stop_after, teardown)


def catch_up(configs: list[TrainConfig]) -> None:
    """Runs to be trained together that stand at different iterations (a kill between their K checkpoint writes,
    or before the first of some) are brought to the leaders' iteration first, each alone: runs trained alone
    match runs trained together (README), and a resubmitted job then goes on instead of being refused for good."""
    steps = [load_checkpoint(Path(c.out) / "last.pt", training=True)["state"]["step"]
             if (Path(c.out) / "last.pt").is_file() else -1 for c in configs]
    lead = max(steps)
    for cfg, step in zip(configs, steps):
        if step < lead:
            messages.say(f"{cfg.out} stands at iteration {max(step, 0):,}, the others at {lead:,} (a kill between "
                         "their checkpoints): training it alone to there first")
            _train_runs([cfg], step >= 0, lead - max(step, 0), teardown=False)


def _train_runs(configs: list[TrainConfig], resume: bool, stop_after: int | None, teardown: bool) -> list[dict[str, Any]]:
    if resume and len(configs) > 1:
        catch_up(configs)
    runs, train_step = prepare(configs, resume)
    clean = False
    try:
        summaries = loop(runs, train_step, stop_after)
        clean = True
        return summaries
    finally:
        for run in runs:
            run.run_dir.release()
        if teardown:
            distributed.teardown(train_step.dist, clean)


def train(cfg: TrainConfig, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    return train_runs([cfg], resume, stop_after)[0]


def loop(runs: list[Run], train_step: TrainingStep, stop_after: int | None = None) -> list[dict[str, Any]]:
    """Train `runs` from their common step to the end (or `stop_after` steps on); returns their summaries."""
    step, cfg = common_step(runs), runs[0].cfg
    end = cfg.iters if stop_after is None else min(cfg.iters, step + stop_after)
    for run in runs:
        run.begin(train_step.path)
    train_step.net.train()
    progress = Progress(runs, train_step.dist, step)
    half_done = False  # inside a step or a log point: nothing consistent to save if stopped there
    with StopSignals() as signals:
        try:
            while step < end:
                lrs = [run.lr for run in runs]
                waiting = time.perf_counter()
                batches = [run.data.batch(step) for run in runs]
                waited = time.perf_counter() - waiting
                half_done = True
                losses, errors = first_or_next_step(train_step, runs, batches, lrs, progress, step + 1)
                step += 1
                for k, run in enumerate(runs):
                    run.state.step = step
                    run.window.add(losses[k], errors[k], len(batches[k].labels), waited)
                progress.update()
                stop = signals.requested is not None
                logged = at_log_point(cfg, step, end)
                agreed = logged and log_point(runs, train_step, lrs, len(batches[0].labels), end, stop, progress)
                if not logged and train_step.dist.enabled and step % STOP_POLL.get(train_step.device.type, 10) == 0:
                    agreed = agree_to_stop(train_step, stop)
                half_done = False
                if agreed or (stop and not train_step.dist.enabled):  # under torchrun the ranks agree first
                    raise _StopRequested
        except (KeyboardInterrupt, _StopRequested) as stopped:
            progress.close()
            # Under torchrun only a stop the ranks agreed on is saved (saving gathers the metric window from every
            # rank); a second Ctrl-C on one rank keeps the last checkpoint.
            consistent = not half_done and (isinstance(stopped, _StopRequested) or not train_step.dist.enabled)
            if consistent:
                train_step.sync()
            saved = [run.interrupted(consistent) for run in runs]
            raise RunInterrupted(signals.requested or "SIGINT", step, all(saved)) from None
    progress.close()
    train_step.sync()
    return [run.finish() for run in runs]


# Under torchrun the ranks stop together, at a step they agree on: torchrun's agent SIGKILLs its workers 30 s after
# forwarding a SIGTERM, and a log interval can be longer (ImageNet, --log-every 300 on ResNet-56). So between
# log points they agree every STOP_POLL steps: one all-reduce of one number, next to the gradients' every step
# on a CPU; every 10 steps on a GPU, where it also waits for the device (~0.1 s a step on ImageNet: about 1 s).
STOP_POLL = {"cpu": 1, "cuda": 10}


def agree_to_stop(train_step: TrainingStep, stop: bool) -> bool:
    """Whether any rank was asked to stop (every rank calls it at the same step)."""
    flag = torch.tensor([float(stop)], device=train_step.device)
    return bool(distributed.all_sum(train_step.dist, flag).item() > 0)


def at_log_point(cfg: TrainConfig, step: int, end: int) -> bool:
    return step % cfg.log_every == 0 or at_save(cfg, step, end)


def at_eval(cfg: TrainConfig, step: int) -> bool:
    return step % cfg.eval_every == 0 or step == cfg.iters


def at_save(cfg: TrainConfig, step: int, end: int) -> bool:
    return at_eval(cfg, step) or step == end or bool(cfg.save_every and step % cfg.save_every == 0)


def log_point(runs: list[Run], train_step: TrainingStep, lrs: list[float], batch: int, end: int, stop: bool,
              progress: "Progress") -> bool:
    """Close each run's metric window, evaluate, log and checkpoint, as the step asks; returns whether every
    rank asked to stop. A checkpoint between log points (--save-every) leaves the window open and stores it in
    the checkpoint, so the next logged figures cover the same steps as without it."""
    cfg, step = runs[0].cfg, runs[0].state.step
    # A checkpoint by time is decided on the main process alone (only it writes; no collective depends on it).
    evaluating, saving = at_eval(cfg, step), at_save(cfg, step, end) or runs[0].save_due()
    if not (evaluating or step % cfg.log_every == 0):
        train_step.sync()
        for run in runs:
            run.save_between_log_points()
        return bool(distributed.all_sum(train_step.dist, torch.tensor([float(stop)], device=train_step.device)).item() > 0)
    closed = [run.close_window(lr, batch, stop) for run, lr in zip(runs, lrs)]
    records = [record for record, _ in closed]
    bests: list[dict[str, Any] | None] = [None] * len(runs)
    if saving:
        train_step.sync()  # the runs' own models and optimizers hold the trained state
    if evaluating:
        for k, run in enumerate(runs):
            started = time.perf_counter()
            figures, bests[k] = run.evaluate()
            if run.state.eval_seconds is not None:
                run.state.eval_seconds += time.perf_counter() - started
            records[k].update(figures)
    for run, record in zip(runs, records):
        run.write(record)
        run.window.restart_clock()  # evaluating is not training time
    if saving:
        for run, best in zip(runs, bests):
            run.save(best)
    progress.show(records)
    return closed[0][1]


def first_or_next_step(train_step: TrainingStep, runs: list[Run], batches: list, lrs: list[float], progress: "Progress",
                       step: int):
    """One step of every run (making `step` steps done); the first of a compiled step compiles it, and is
    timed apart."""
    if not train_step.path.compiled or train_step.compiled_once:
        return train_step(batches, lrs, step)
    progress.write("compiling the training step (torch.compile: about a minute on an idle 2-core CPU, up to 8 "
                   "on a busy one)...")
    started = time.perf_counter()
    out = train_step(batches, lrs, step)
    train_step.compiled_once = True
    seconds = time.perf_counter() - started
    progress.write(f"compiled in {seconds:.0f} s; not counted in images/s")
    for run in runs:
        run.state.compile_seconds += seconds
        run.window.restart_clock()
    return out


def common_step(runs: list[Run]) -> int:
    starts = {run.state.step for run in runs}
    if len(starts) != 1:
        raise UserError(f"runs trained together must be at the same iteration, not {sorted(starts)}")
    return starts.pop()
