"""The training loop: one loop for one run or K runs trained together, iteration-based as the paper counts.

Batch i of a run is a pure function of (seed, i) (see data.device_loader), the model has no randomness,
and a checkpoint carries model, optimizer, schedule and metric-window state: resuming from step k replays
steps k.. exactly. SIGINT/SIGTERM stop the loop after the step in progress, which is then saved.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from resnetlab.engine import distributed, fastcheck, fastpath, messages, start
from resnetlab.engine.devices import resolve_device
from resnetlab.engine.checkpoint import load_checkpoint
from resnetlab.engine.config import TrainConfig, from_dict, validate
from resnetlab.engine.schedule import extended
from resnetlab.engine.run import SPLIT_NAMES, Run, TrainingDiverged
from resnetlab.engine.stack import Stack
from resnetlab.multiseed import check_together
from resnetlab.engine.settings import RESUME_CHANGEABLE, TOGETHER_SAME
from resnetlab.errors import UserError
from resnetlab.files import read_small_text

__all__ = ["RunInterrupted", "SPLIT_NAMES", "TrainingDiverged", "load_run_config", "prepare", "resume_configs",
           "seed_configs", "train", "train_runs"]


class RunInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM (or Ctrl-C): the loop stopped; `saved` says whether last.pt holds its last step.
    A KeyboardInterrupt, so that a library caller's `except Exception` does not swallow the user's Ctrl-C."""

    def __init__(self, signame: str, step: int, saved: bool) -> None:
        self.signame, self.step, self.saved = signame, step, saved
        self.exit_code = 128 + (signal.SIGTERM if signame == "SIGTERM" else signal.SIGINT)
        super().__init__(f"{signame}: stopped, {f'saved at iteration {step:,}' if saved else 'the last checkpoint is kept'}")


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


def prepare(configs: list[TrainConfig], resume: bool = False) -> tuple[list[Run], Stack]:
    """The runs of `configs` (restored when resuming) and the stack that trains them."""
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
    # channels_last helps on both: 460 vs 401 images/s for ResNet-20 on 2 CPU cores (benchmarks/results).
    channels_last = first.channels_last != "off"
    runs = [Run(cfg, resume, device, dist, channels_last) for cfg in configs]
    lead = runs[0]
    recorded = lead.state.fast_paths[-1]["precision"] if lead.state.fast_paths else None
    path = fastpath.choose(first, device, len(runs), recorded)
    stack = Stack(runs, path)
    say = messages.say if dist.is_main else (lambda line: None)
    batches = [run.data.train.batch(lead.state.step) for run in runs]
    seconds, found = fastcheck.settle(stack, fastpath.fallbacks(first, path), batches, [run.lr for run in runs], say)
    for run in runs:
        run.state.compile_seconds += seconds
    if device.type == "cuda":
        fastpath.configure_cuda(stack.path.amp)
    stack.self_check = found
    for line in found:
        say(f"self-check: {line}")
    say(f"fast path: {stack.path.why}")
    return runs, stack


def train_runs(configs: list[TrainConfig], resume: bool = False, stop_after: int | None = None,
               teardown: bool = True, quiet: bool = False) -> list[dict[str, Any]]:
    """Train the runs of `configs` together (one run: the common case); teardown=False keeps a torchrun
    process group for a caller that trains several runs in one job; quiet: no lines, no bar (errors only)."""
    # Under torchrun the main process speaks for all (the others would print every line again).
    with messages.printed(quiet or os.environ.get("RANK", "0") != "0"):
        return _train_runs(configs, resume, stop_after, teardown)


def _train_runs(configs: list[TrainConfig], resume: bool, stop_after: int | None, teardown: bool) -> list[dict[str, Any]]:
    runs, stack = prepare(configs, resume)
    clean = False
    try:
        summaries = loop(runs, stack, stop_after)
        clean = True
        return summaries
    finally:
        for run in runs:
            run.run_dir.release()
        if teardown:
            distributed.teardown(stack.dist, clean)


def train(cfg: TrainConfig, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    return train_runs([cfg], resume, stop_after)[0]


def loop(runs: list[Run], stack: Stack, stop_after: int | None = None) -> list[dict[str, Any]]:
    """Train `runs` from their common step to the end (or `stop_after` steps on); returns their summaries."""
    step, cfg = common_step(runs), runs[0].cfg
    end = cfg.iters if stop_after is None else min(cfg.iters, step + stop_after)
    for run in runs:
        run.begin(stack.path)
    stack.net.train()
    progress = Progress(runs, stack.dist, step)
    half_done = False  # inside a step or a log point: nothing consistent to save if stopped there
    with StopSignals() as signals:
        try:
            while step < end:
                lrs = [run.lr for run in runs]
                waiting = time.perf_counter()
                batches = [run.data.train.batch(step) for run in runs]
                waited = time.perf_counter() - waiting
                half_done = True
                losses, errors = first_or_next_step(stack, runs, batches, lrs, progress)
                step += 1
                for k, run in enumerate(runs):
                    run.state.step = step
                    run.window.add(losses[k], errors[k], len(batches[k][1]), waited)
                progress.update()
                stop = signals.requested is not None
                agreed = at_log_point(cfg, step, end) and log_point(runs, stack, lrs, len(batches[0][1]), end, stop,
                                                                     progress)
                half_done = False
                if agreed or (stop and not stack.dist.enabled):  # under torchrun the ranks agree at a log point
                    raise _StopRequested
        except (KeyboardInterrupt, _StopRequested):
            progress.close()
            if not half_done:
                stack.sync()
            saved = [run.interrupted(not half_done) for run in runs]
            raise RunInterrupted(signals.requested or "SIGINT", step, all(saved)) from None
    progress.close()
    stack.sync()
    return [run.finish() for run in runs]


def at_log_point(cfg: TrainConfig, step: int, end: int) -> bool:
    return step % cfg.log_every == 0 or at_save(cfg, step, end)


def at_eval(cfg: TrainConfig, step: int) -> bool:
    return step % cfg.eval_every == 0 or step == cfg.iters


def at_save(cfg: TrainConfig, step: int, end: int) -> bool:
    return at_eval(cfg, step) or step == end or bool(cfg.save_every and step % cfg.save_every == 0)


def log_point(runs: list[Run], stack: Stack, lrs: list[float], batch: int, end: int, stop: bool,
              progress: "Progress") -> bool:
    """Close each run's metric window, evaluate, log and checkpoint, as the step asks; returns whether every
    rank asked to stop. A checkpoint between log points (--save-every) leaves the window open and stores it in
    the checkpoint, so the next logged figures cover the same steps as without it."""
    cfg, step = runs[0].cfg, runs[0].state.step
    # A checkpoint by time is decided on the main process alone (only it writes; no collective depends on it).
    evaluating, saving = at_eval(cfg, step), at_save(cfg, step, end) or runs[0].save_due()
    if not (evaluating or step % cfg.log_every == 0):
        stack.sync()
        for run in runs:
            run.save_between_log_points()
        return bool(distributed.all_sum(stack.dist, torch.tensor([float(stop)], device=stack.device)).item() > 0)
    closed = [run.close_window(lr, batch, stop) for run, lr in zip(runs, lrs)]
    records = [record for record, _ in closed]
    bests: list[dict[str, Any] | None] = [None] * len(runs)
    if saving:
        stack.sync()  # the runs' own models and optimizers hold the trained state
    if evaluating:
        for k, run in enumerate(runs):
            figures, bests[k] = run.evaluate()
            records[k].update(figures)
    for run, record in zip(runs, records):
        run.write(record)
        run.window.restart_clock()  # evaluating is not training time
    if saving:
        for run, best in zip(runs, bests):
            run.save(best)
    progress.show(records)
    return closed[0][1]


def first_or_next_step(stack: Stack, runs: list[Run], batches: list, lrs: list[float], progress: "Progress"):
    """One step of every run; the first of a compiled step compiles it, and is timed apart."""
    if not stack.path.compiled or stack.compiled_once:
        return stack.step(batches, lrs)
    progress.write("compiling the training step (torch.compile: about a minute on an idle 2-core CPU, up to 8 "
                   "on a busy one)...")
    started = time.perf_counter()
    out = stack.step(batches, lrs)
    stack.compiled_once = True
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


class Progress:
    """The progress bar, the lines of each evaluation, and the time estimate, on the main process only."""

    def __init__(self, runs: list[Run], dist: distributed.DistInfo, step: int) -> None:
        self.runs, lead = runs, runs[0]
        name = lead.cfg.model if len(runs) == 1 else f"{len(runs)} x {lead.cfg.model}"
        self.bar = tqdm(total=lead.cfg.iters, initial=step, desc=name, unit="it", dynamic_ncols=True,
                        disable=None if dist.is_main and not messages.quiet() else True)
        self.estimated = lead.device.type != "cpu" or not dist.is_main  # said once, on the CPU

    def update(self) -> None:
        self.bar.update(1)

    def write(self, line: str) -> None:
        messages.say(line)

    def show(self, records: list[dict[str, Any]]) -> None:
        first = records[0]
        self.bar.set_postfix(loss=f"{first['train_loss']:.3f}", err=f"{first['train_error']:.1%}",
                             lr=f"{first['lr']:g}", img_s=f"{first['images_per_s']:,.0f}", data=f"{first['data_wait']:.0%}")
        for run, record in zip(self.runs, records):
            if "val_error" in record:
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
    return (f"at {images_per_s:,.0f} images/s on this CPU the remaining {cfg.iters - step:,} iterations take about "
            f"{duration(seconds)}; --iters N shortens the run (the lr milestones scale with it), and Ctrl-C stops it "
            f"resumably (--resume {cfg.out})")


def duration(seconds: float) -> str:
    """A time as a person says it: 40 s, 12 min, 2.3 h."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def seed_configs(cfg: TrainConfig, seeds: int) -> list[TrainConfig]:
    """One config per seed cfg.seed .. cfg.seed+seeds-1, each in RUN_DIR/seed<N>."""
    return [dataclasses.replace(cfg, seed=cfg.seed + i, out=f"{cfg.out}/seed{cfg.seed + i}") for i in range(seeds)]


def load_run_config(run_dir: Path) -> TrainConfig:
    """The configuration a run was started with: config.json, or the checkpoint's copy of it."""
    if run_dir.is_file():
        raise UserError(f"--resume {run_dir}: a file; give the run's folder")
    if not (run_dir / "last.pt").is_file():
        raise UserError(f"--resume {run_dir}: no last.pt there, nothing to resume")
    path = run_dir / "config.json"
    if path.exists() or path.is_symlink():
        try:
            values = json.loads(read_small_text(path, "the run's config", limit=1 << 20))
        except (json.JSONDecodeError, RecursionError):
            values = None
        if not isinstance(values, dict):
            raise UserError(f"{path} is damaged (not a JSON object); delete it to resume from the copy inside last.pt")
        return from_dict(values, str(path))
    return from_dict(load_checkpoint(run_dir / "last.pt", training=True)["config"], str(run_dir / "last.pt"))


def resume_configs(run_dir: Path, flags: dict[str, Any]) -> list[TrainConfig]:
    """The configs to resume RUN_DIR with (one per seed for runs trained together), with the changes
    `flags` may make."""
    together = sorted(run_dir.glob("seed*/last.pt")) if not (run_dir / "last.pt").exists() else []
    return [resumed_config(p.parent, flags) for p in together] or [resumed_config(run_dir, flags)]


def resumed_config(run_dir: Path, flags: dict[str, Any]) -> TrainConfig:
    """The config of the run in `run_dir`, changed by `flags` where a resumed run may change."""
    fixed = sorted(k for k, v in flags.items() if v is not None and k not in RESUME_CHANGEABLE)
    if fixed:
        raise UserError(f"--{fixed[0].replace('_', '-')} cannot change when resuming (only "
                        f"{', '.join('--' + k.replace('_', '-') for k in sorted(RESUME_CHANGEABLE))})")
    old = load_run_config(run_dir)
    changes = {k: v for k, v in flags.items() if v is not None}
    if "iters" in changes and "milestones" not in changes:
        # --iters on resume follows the schedule a fresh run of that length would have (or is refused).
        step = load_checkpoint(run_dir / "last.pt", training=True)["state"]["step"]
        changes["milestones"] = extended(old, changes["iters"], step)
    cfg = dataclasses.replace(old, out=str(run_dir), **changes)
    validate(cfg)
    return cfg
