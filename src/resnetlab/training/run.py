"""One training run: its configuration, data, model and optimizer state, schedule state, metrics and
checkpoints. The loop (training/loop.py) trains one or several runs; a Run keeps its own books.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any

import torch

from resnetlab.data import Normalization
from resnetlab.errors import UserError
from resnetlab.inference.scoring import evaluate
from resnetlab.models import create_model
from resnetlab.runtime import distributed, messages
from resnetlab.runtime.checkpoint import load_checkpoint
from resnetlab.training import averagers, curves, expected_speed, fastpath, start
from resnetlab.training import learning_rate as schedule
from resnetlab.training.batches import Data
from resnetlab.training.config import TrainConfig
from resnetlab.training.learning_rate import RunState
from resnetlab.training.metrics import MetricWindow, check_divergence
from resnetlab.training.optimizers import OPTIMIZERS
from resnetlab.training.rundir import RunDir

SPLIT_NAMES = {"holdout": "hold-out", "test": "test", "val": "val"}


def model_options(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    opts: dict[str, Any] = {"num_classes": num_classes, "zero_init_residual": cfg.zero_init_residual, "style": cfg.style}
    if cfg.shortcut:
        opts["shortcut"] = cfg.shortcut
    return opts


def restore_cuda_rng(states: list) -> None:
    """The CUDA generators' states a checkpoint saved, for the GPUs this machine has (a checkpoint from a
    machine with more GPUs carries more states than there are devices here)."""
    if not torch.cuda.is_available():
        return
    for index, state in enumerate(states[:torch.cuda.device_count()]):
        torch.cuda.set_rng_state(state, index)


class Run:
    def __init__(self, cfg: TrainConfig, resume: bool, device: torch.device, dist: distributed.DistInfo,
                 channels_last: bool) -> None:
        self.cfg, self.device, self.dist = cfg, device, dist
        self.last_save = time.monotonic()
        self.amp_dtype: torch.dtype | None = None  # the precision of the steps and evaluations: set by TrainingStep.use
        self.run_dir = RunDir(cfg.out)
        if dist.is_main:
            self.run_dir.check(resume)  # before any data is read: a bad --out costs nothing
        ckpt = load_checkpoint(self.run_dir / "last.pt", training=True) if resume else None
        torch.manual_seed(cfg.seed)
        # A fresh run finds its --weights; a resumed one has their normalization and record in its checkpoint
        # (the weights file need not exist on the machine it resumes on).
        self.start = start.resolve_start(cfg) if cfg.weights and ckpt is None else None
        self.started_from = self.start.record() if self.start else (ckpt or {}).get("started_from")
        self.data = Data(cfg, device, dist, channels_last, self._weights_normalization(ckpt))
        if ckpt is None:  # a resumed run has its length in iterations in its checkpoint's settings
            self.cfg = cfg = schedule.with_epochs(cfg, self.data.split["train_images"])
        self.model = create_model(cfg.model, **model_options(cfg, len(self.data.classes)))
        if self.start is not None and ckpt is None:
            line = start.load_start(self.model, cfg, self.start, self.data.classes, model_options(cfg, 0))
            if dist.is_main:
                messages.say(line)
        self.frozen = start.freeze(self.model, cfg.freeze) if cfg.freeze else []
        self.model = self.model.to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = OPTIMIZERS[cfg.opt].build(start.param_groups(self.model, cfg), cfg)
        self.scaler = torch.amp.GradScaler(device.type, enabled=False)  # replaced by TrainingStep.use for fp16
        self.scaler_state: dict[str, Any] = {}  # a resumed fp16 run's loss scale
        self.averaged: dict[str, dict] = {}  # each averager's weights (--model-ema), kept by TrainingStep.sync
        self.state = RunState()
        self.warmup = schedule.uses_warmup(cfg)
        if ckpt is not None:
            self._restore(ckpt)
        self.tensorboard = None
        if dist.is_main:
            self.run_dir.take(resume, self.state.step)
            if cfg.tensorboard:
                try:
                    # tensorboard is optional (an extra) and slow to import: only runs that log to it load it
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:
                    raise UserError("--tensorboard needs the tensorboard package: pip install 'resnetlab[tensorboard]'") from None
                self.tensorboard = SummaryWriter(str(self.run_dir.tensorboard_dir()))

    lr = property(lambda self: schedule.learning_rate(self.cfg, self.state, self.warmup))

    def _weights_normalization(self, ckpt: dict[str, Any] | None) -> Normalization | None:
        if self.start is not None:
            return self.start.normalization
        if ckpt is not None and self.cfg.normalization == "weights":
            try:
                return Normalization.from_dict(ckpt["normalization"])
            except (KeyError, TypeError, AttributeError):
                raise UserError(f"{self.run_dir / 'last.pt'} is damaged: its normalization cannot be read") from None
        return None

    # -- checkpoints ---------------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(), "state": asdict(self.state),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "config": self.cfg.to_dict(), "model_name": self.cfg.model,
            "model_options": model_options(self.cfg, len(self.data.classes)),
            "classes": self.data.classes, "normalization": self.data.normalization.to_dict(),
            "input": self.data.input, "split": {k: v for k, v in self.data.split.items() if k != "val_indices"},
            "started_from": self.started_from, **({"averaged": self.averaged} if self.averaged else {}),
        }

    def _restore(self, ckpt: dict[str, Any]) -> None:
        path = self.run_dir / "last.pt"
        if ckpt["model_name"] != self.cfg.model:
            raise UserError(f"{path} is a {ckpt['model_name']} run, not {self.cfg.model}")
        self.data.check_same(ckpt, self.cfg.data, self.run_dir.path)
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scaler_state = dict(ckpt["scaler"])
            self.averaged = dict(ckpt.get("averaged") or {})
            # A checkpoint from before evaluations were timed: their total is unknown, not zero.
            self.state = RunState(**{"eval_seconds": None, **ckpt["state"]})
            torch.set_rng_state(ckpt["rng"]["torch"])
            restore_cuda_rng(ckpt["rng"].get("cuda"))
            step = self.state.step
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise ValueError(f"its iteration is {step!r}")
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise UserError(f"{path} is damaged or does not fit this run ({type(e).__name__}"
                            f"{': ' + str(e) if isinstance(e, ValueError) and 'iteration' in str(e) else ''}); "
                            "restore it from a copy, or start the run again in a new --out") from None

    def save_due(self) -> bool:
        """Whether --save-minutes have passed since this process's last checkpoint (main process only)."""
        return bool(self.cfg.save_minutes and self.dist.is_main and
                    time.monotonic() - self.last_save >= 60 * self.cfg.save_minutes)

    def save(self, best: dict[str, Any] | None = None) -> None:
        """last.pt; with `best` (the split that chose it, the iteration, the error) best.pt as well."""
        if not self.dist.is_main:
            return
        payload = self._payload()
        if best is not None:  # first: a kill between the two leaves last.pt's record of the best behind best.pt,
            self.run_dir.save("best.pt", {**payload, "best": best})  # and the resumed run writes it again
        self.run_dir.save("last.pt", payload)
        self.last_save = time.monotonic()

    def save_between_log_points(self) -> None:
        """last.pt with the open metric window in it (resumed, the window reopens: the same figures are logged);
        a window whose loss is not finite is not saved (the next log point stops the run)."""
        if self.window.store(self.state):
            self.save()
        self.state.window_loss, self.state.window_errors, self.state.window_steps = 0.0, 0, 0

    def write(self, record: dict[str, Any]) -> None:
        """One record of metrics.jsonl (and TensorBoard)."""
        if not self.dist.is_main:
            return
        self.run_dir.log(record)
        if ("val_error" in record or record["iteration"] >= self.cfg.iters) and curves.due(
                self.run_dir.path, final=record["iteration"] >= self.cfg.iters):
            curves.draw(self.run_dir.path, self.run_dir.metrics(), f"{self.cfg.model} (seed {self.cfg.seed})")
        if self.tensorboard is not None:
            for key, value in ((k, v) for k, v in record.items() if k != "iteration"):
                self.tensorboard.add_scalar(key, value, record["iteration"])
            self.tensorboard.flush()

    # -- the books of the loop -----------------------------------------------------------------------
    def begin(self, path: fastpath.FastPath) -> None:
        """Record how the steps run, write config and split, say the schedule, reopen the metric window an
        interrupt left."""
        cfg, state = self.cfg, self.state
        change = self._record(path)
        if self.dist.is_main:
            # config.json holds the settings asked for and, apart, the fast path this process actually uses.
            self.run_dir.write_json("config.json", {**cfg.to_dict(), "fast_path": {**state.fast_paths[-1], "why": path.why}})
            self.run_dir.write_json("split.json", self.data.split)
            verb = f"resuming {cfg.out} at iteration {state.step:,}" if state.step else f"training {cfg.out}"
            messages.say(f"{cfg.model}: {verb}; {self.data.describe_input()}; {schedule.describe(cfg, self.warmup)}")
            remaining, size = cfg.iters - state.step, self.data.input["size"]
            if expected := expected_speed.expectation(cfg.model, remaining, cfg.batch_size, self.device, size):
                messages.say(expected)
            if change:
                messages.say(change)
        self.window = MetricWindow(self.device, self.dist, state)
        self.model.train()

    def _record(self, path: fastpath.FastPath) -> str | None:
        """Append the fast path to the run's history when it differs from the last; returns the line that
        says a resumed run changed precision, mode or machine."""
        state = self.state
        used = {"precision": path.precision, "mode": path.mode, "device": fastpath.device_name(self.device)}
        last = state.fast_paths[-1] if state.fast_paths else None
        if last is not None and all(last[k] == used[k] for k in used):
            return None
        state.fast_paths.append({"from_iteration": state.step, **used})
        if last is None:
            return (f"note: how iterations 0-{state.step:,} ran was not recorded (a checkpoint of an older resnetlab)"
                    if state.step else None)
        return (f"note: this run ran {last['mode']} {last['precision']} on {last['device']} until iteration "
                f"{state.step:,}; it continues {path.name} on {used['device']}")

    def close_window(self, lr: float, batch: int, stop: bool) -> tuple[dict[str, Any], bool]:
        """The training figures since the last log point, checked (divergence) and acted on (the warm-up
        switch): the record to log, and whether any rank asked to stop."""
        cfg, state = self.cfg, self.state
        figures = self.window.close(batch, stop)
        state.train_seconds += figures.seconds
        check_divergence(state, figures.loss, lr, len(self.data.classes), self.run_dir / "last.pt")
        if self.warmup and not state.warm_done and schedule.warmup_over(cfg, figures.error):
            state.warm_done = True
        elif self.warmup and not state.warm_done and not schedule.warming_up(cfg, state, self.warmup):
            state.warm_done = True
            if self.dist.is_main:
                messages.say(f"note: the warm-up at lr {cfg.warmup_lr:g} ended at the first lr milestone (iteration "
                             f"{cfg.milestones[0]:,}) without the training error falling below "
                             f"{cfg.warmup_until_error:.0%} (it is {figures.error:.1%})")
        record = {"iteration": state.step, "lr": lr, "train_loss": figures.loss, "train_error": figures.error,
                  "images_per_s": figures.images_per_s, "data_wait": figures.data_wait}
        return record, figures.stop

    def evaluate(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The validation metrics, and best.pt's record when this evaluation is the best so far."""
        if self.data.val is None:
            return {}, None
        result = evaluate(self.model, self.data.val, self.amp_dtype)
        # Under torchrun each rank evaluates with its own BN statistics, so the figures differ slightly: every
        # rank takes rank 0's, so that all log the same and take the same plateau decision (one lr for all).
        figures = torch.tensor([result["loss"], result["top1_error"], result["top5_error"]], dtype=torch.float64,
                               device=self.device)
        loss, top1, top5 = distributed.from_main(self.dist, figures).tolist()
        improved = schedule.after_evaluation(self.cfg, self.state, top1)
        best = ({"chosen_on": self.data.split["val"], "iteration": self.state.step, "error": top1}
                if improved else None)
        figures = {"val_loss": loss, "val_error": top1, "val_top5_error": top5}
        for name, state in self.averaged.items():  # the averaged weights beside the trained ones (never chosen on)
            result = evaluate(averagers.averaged_model(self.model, state), self.data.val, self.amp_dtype)
            own = torch.tensor([result["loss"], result["top1_error"]], dtype=torch.float64, device=self.device)
            figures[f"{name}_val_loss"], figures[f"{name}_val_error"] = distributed.from_main(self.dist, own).tolist()
        return figures, best

    def line(self, r: dict[str, Any]) -> str:
        split = SPLIT_NAMES.get(self.data.split["val"], self.data.split["val"])
        val = f" | {split} loss {r['val_loss']:.4f} err {r['val_error']:.2%}" if "val_error" in r else ""
        return (f"iter {r['iteration']:>6}/{self.cfg.iters} lr {r['lr']:g} | train loss {r['train_loss']:.4f} "
                f"err {r['train_error']:.2%}{val} | {r['images_per_s']:,.0f} img/s, {r['data_wait']:.0%} waiting for data")

    def interrupted(self, saveable: bool) -> bool:
        """Stopped between steps: keep the state after the last finished step, with the metric window it had
        gathered. Stopped inside a log point or a step: keep the last checkpoint. Returns whether it saved."""
        saveable = saveable and self.window.store(self.state)
        if saveable:
            self.save()
        return saveable

    def finish(self) -> dict[str, Any]:
        if self.tensorboard is not None:
            self.tensorboard.close()
        evaluated = [r for r in self.run_dir.metrics() if "val_error" in r] if self.dist.is_main else []
        last = evaluated[-1] if evaluated else {}
        chosen = math.isfinite(self.state.best_val_error)
        summary = {
            "model": self.cfg.model, "iterations": self.state.step, "target_iterations": self.cfg.iters,
            "finished": self.state.step >= self.cfg.iters, "val_split": self.data.split["val"],
            "final_val_error": last.get("val_error"), "final_iteration_evaluated": last.get("iteration"),
            "best_val_error": self.state.best_val_error if chosen else None,
            "best_chosen_on": self.data.split["val"] if chosen else None,
            "train_seconds": self.state.train_seconds, "compile_seconds": self.state.compile_seconds,
            "eval_seconds": self.state.eval_seconds,
            "precision": "/".join(dict.fromkeys(p["precision"] for p in self.state.fast_paths)),
            "mode": "/".join(dict.fromkeys(p["mode"] for p in self.state.fast_paths)),
            "fast_paths": self.state.fast_paths,
            "device": str(self.device), "torch": torch.__version__, "run_dir": str(self.run_dir.path),
        }
        # each averager's error at the same last evaluation ("final_ema_val_error"): what evaluate measures
        summary.update({f"final_{key}": value for key, value in last.items() if key.endswith("_val_error")
                        and key not in ("val_error", "val_top5_error")})
        if self.dist.is_main:
            self.run_dir.write_json("summary.json", summary)
        self.run_dir.release()
        return summary
