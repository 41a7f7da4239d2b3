"""The training loop: iteration-based schedules as the paper counts, exact resume, atomic checkpoints.

Batch i is a pure function of (seed, i) (see data.device_loader), the model has no randomness, and the
checkpoint carries model, optimizer, schedule and metric-window state: resuming from step k replays
steps k.. exactly, and a run stopped by SIGINT/SIGTERM saves after its last finished step.
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from resnetlab.data import DeviceLoader, Normalization, open_dataset
from resnetlab.data.arrays import ArrayDataset
from resnetlab.data.imagenet import StreamLoader, eval_loader
from resnetlab.data.sources import split_for_training, validation_name
from resnetlab.engine import distributed, schedule
from resnetlab.engine.checkpoint import load_checkpoint
from resnetlab.engine.config import TrainConfig, from_dict, validate
from resnetlab.engine.evaluate import evaluate
from resnetlab.engine.rundir import RunDir
from resnetlab.engine.schedule import RunState, learning_rate, uses_warmup
from resnetlab.errors import UserError
from resnetlab.models import create_model

# A loss this many times above its first logged value (or chance, ln(classes), if larger) is diverging:
# SGD at a sane lr never climbs that far, while --lr 10 reaches 1e4 within a few hundred steps.
EXPLODED = 20.0
SPLIT_NAMES = {"holdout": "hold-out", "test": "test", "val": "val"}

__all__ = ["RunState", "Trainer", "TrainingDiverged", "RunInterrupted", "learning_rate", "uses_warmup", "train"]


class TrainingDiverged(Exception):
    """The loss became NaN, infinite or exploded; the last good checkpoint is kept."""


class RunInterrupted(Exception):
    """SIGINT/SIGTERM (or Ctrl-C): the run stopped; `saved` says whether last.pt holds its last step."""

    def __init__(self, signame: str, step: int, run_dir: Path, saved: bool) -> None:
        self.signame, self.step, self.run_dir, self.saved = signame, step, run_dir, saved
        self.exit_code = 128 + (signal.SIGTERM if signame == "SIGTERM" else signal.SIGINT)
        where = f"saved at iteration {step:,}" if saved else "the last checkpoint is kept"
        super().__init__(f"{signame}: stopped, {where}")


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here (use --device cpu)")
    return torch.device(name)


def model_options(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    opts: dict[str, Any] = {"num_classes": num_classes, "zero_init_residual": cfg.zero_init_residual, "style": cfg.style}
    if cfg.shortcut:
        opts["shortcut"] = cfg.shortcut
    return opts


class Data:
    """Training batches, validation batches and what a checkpoint must remember about the data."""

    def __init__(self, cfg: TrainConfig, device: torch.device, dist: distributed.DistInfo, channels_last: bool):
        with distributed.local_main_first(dist):  # one process per node downloads, extracts, decodes
            ds = open_dataset(cfg.data, skip_corrupt=cfg.skip_corrupt)
        self.classes = ds.classes
        train, val, self.split = split_for_training(ds, validation_name(ds, cfg.val, cfg.holdout), cfg.holdout)
        if self.split.get("holdout_rule") and dist.is_main:
            print(f"note: {self.split['holdout_rule']}")
        if cfg.batch_size % dist.world_size:
            raise UserError(f"--batch-size {cfg.batch_size} does not split evenly over {dist.world_size} processes")
        if cfg.batch_size > len(train):
            raise UserError(f"--batch-size {cfg.batch_size} is larger than the {len(train):,} training images")
        if isinstance(train, ArrayDataset):
            self.normalization = (Normalization.imagenet() if cfg.normalization == "imagenet"
                                  else Normalization.fit(cfg.normalization, train.images))
            self.input = {"size": int(train.images.shape[1]), "resize": int(train.images.shape[1])}
            self.train = DeviceLoader(train.images, train.labels, cfg.batch_size, device, self.normalization,
                                      augment=True, seed=cfg.seed, rank=dist.rank, world_size=dist.world_size,
                                      channels_last=channels_last)
            self.val = (DeviceLoader(val.images, val.labels, 1000, device, self.normalization, augment=False)
                        if val is not None else None)
        else:
            self.normalization = Normalization.imagenet()
            self.input = {"size": 224, "resize": 256}
            self.train = StreamLoader(train, cfg.batch_size, device, seed=cfg.seed, workers=cfg.workers,
                                      rank=dist.rank, world_size=dist.world_size, channels_last=channels_last)
            self.val = eval_loader(val, 100, cfg.workers) if val is not None else None


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False) -> None:
        validate(cfg)
        self.cfg = cfg
        self.run_dir = RunDir(cfg.out)
        self.device = resolve_device(cfg.device)
        self.dist = distributed.setup(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        cuda = self.device.type == "cuda"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None,
                          "auto": torch.bfloat16 if cuda else None}[cfg.amp]
        # channels_last helps on both: 460 vs 401 images/s for ResNet-20 on 2 CPU cores (benchmarks/results).
        channels_last = cfg.channels_last != "off"
        if self.dist.is_main:
            self.run_dir.check(resume)  # before any data is read: a bad --out costs nothing
        ckpt = load_checkpoint(self.run_dir / "last.pt", training=True) if resume else None
        torch.manual_seed(cfg.seed)
        self.data = Data(cfg, self.device, self.dist, channels_last)
        self.model = create_model(cfg.model, **model_options(cfg, len(self.data.classes))).to(self.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if cfg.sync_bn and self.dist.enabled:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.state = RunState()
        self.warmup = uses_warmup(cfg)
        if ckpt is not None:
            self._restore(ckpt)
        self.tensorboard = None
        if self.dist.is_main:
            self.run_dir.take(resume, self.state.step)
            if cfg.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:
                    raise UserError("--tensorboard needs the tensorboard package: pip install 'resnetlab[tensorboard]'") from None
                self.tensorboard = SummaryWriter(str(self.run_dir / "tensorboard"))
        self.net: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if cuda else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile != "off":
            self.net = torch.compile(self.net, mode=None if cfg.compile == "default" else cfg.compile)

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
        }

    def _restore(self, ckpt: dict[str, Any]) -> None:
        path = self.run_dir / "last.pt"
        if ckpt["model_name"] != self.cfg.model:
            raise UserError(f"{path} is a {ckpt['model_name']} run, not {self.cfg.model}")
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])
            self.state = RunState(**ckpt["state"])
            torch.set_rng_state(ckpt["rng"]["torch"])
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise UserError(f"{path} is damaged or does not fit this run ({type(e).__name__}); "
                            "restore it from a copy, or start the run again in a new --out") from None
        if torch.cuda.is_available() and ckpt["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])

    def save(self, best: dict[str, Any] | None = None) -> None:
        """last.pt; with `best` (the split that chose it, the iteration, the error) best.pt as well."""
        if not self.dist.is_main:
            return
        payload = self._payload()
        self.run_dir.save("last.pt", payload)
        if best is not None:
            self.run_dir.save("best.pt", {**payload, "best": best})

    def log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        self.run_dir.log(record)
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "iteration":
                    self.tensorboard.add_scalar(key, value, record["iteration"])
            self.tensorboard.flush()

    # -- the loop ------------------------------------------------------------------------------------
    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step; returns (loss, number of errors) as device tensors: no host synchronization."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            logits = self.net(x)
            loss = F.cross_entropy(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), (logits.detach().argmax(1) != y).sum()

    def begin(self, stop_after: int | None = None, show_bar: bool = True) -> int:
        """Write the run's config and split, say the schedule, open the progress bar; returns the step to stop at."""
        cfg, state = self.cfg, self.state
        if self.dist.is_main:
            self.run_dir.write_json("config.json", cfg.to_dict())
            self.run_dir.write_json("split.json", self.data.split)
            verb = f"resuming {cfg.out} at iteration {state.step:,}" if state.step else f"training {cfg.out}"
            print(f"{cfg.model}: {verb}; {schedule.describe(cfg, self.warmup)}", flush=True)
        self.bar = tqdm(total=cfg.iters, initial=state.step, desc=cfg.model, unit="it", dynamic_ncols=True,
                        disable=None if self.dist.is_main and show_bar else True)
        # The window of an interrupted run continues where it stopped (see RunState).
        self.loss_sum = torch.tensor(state.window_loss, device=self.device)
        self.err_sum = torch.tensor(state.window_errors, device=self.device, dtype=torch.long)
        self.window = state.window_steps
        state.window_loss, state.window_errors, state.window_steps = 0.0, 0, 0
        self.seen, self.window_start = 0, time.perf_counter()
        self.estimated = False
        self.in_log_point = False
        self.model.train()
        return cfg.iters if stop_after is None else min(cfg.iters, state.step + stop_after)

    def account(self, loss: torch.Tensor, errors: torch.Tensor, batch: int, lr: float, end: int,
                sync: Callable[[], None] | None = None, stop: bool = False) -> bool:
        """Book one finished step; at log points check, log, evaluate and checkpoint.

        `stop`: a stop was requested on this process. Returns True when every process is to stop now
        (under torchrun they agree at a log point, where they exchange metrics anyway).
        `sync` runs before an evaluation or checkpoint, for a driver that keeps the weights elsewhere.
        """
        cfg, state = self.cfg, self.state
        self.loss_sum += loss
        self.err_sum += errors
        self.window += 1
        self.seen += batch
        self.bar.update(1)
        at_eval = state.step % cfg.eval_every == 0 or state.step == cfg.iters
        at_save = at_eval or state.step == end or (cfg.save_every and state.step % cfg.save_every == 0)
        if state.step % cfg.log_every and not at_save:
            return stop and not self.dist.enabled
        self.in_log_point = True
        # A log point: the only place the host waits for the device between evaluations. The window's
        # sums are reduced over ranks so every rank sees the same training error (the warm-up rule).
        totals = distributed.all_sum(self.dist, torch.stack([
            self.loss_sum.double(), self.err_sum.double(), torch.tensor(float(stop), device=self.device).double()]))
        loss_total, err_total, stops = totals.tolist()
        mean_loss = loss_total / (self.window * self.dist.world_size)
        train_error = err_total / (self.window * batch * self.dist.world_size)
        elapsed = time.perf_counter() - self.window_start
        state.train_seconds += elapsed
        ips = self.seen * self.dist.world_size / max(elapsed, 1e-9)
        self._check_divergence(mean_loss, lr)
        if self.warmup and not state.warm_done and schedule.warmup_over(cfg, train_error):
            state.warm_done = True
        self.bar.set_postfix(loss=f"{mean_loss:.3f}", err=f"{train_error:.1%}", lr=f"{lr:g}", img_s=f"{ips:,.0f}")
        self._estimate(ips)
        record = {"iteration": state.step, "lr": lr, "train_loss": mean_loss, "train_error": train_error,
                  "images_per_s": ips}
        if (at_eval or at_save) and sync is not None:
            sync()
        best = None
        if at_eval:
            evaluation, best = self._evaluate()
            record.update(evaluation)
            self.bar.write(self._line(record))
        if at_eval or state.step % cfg.log_every == 0:
            self.log(record)
        self.loss_sum.zero_()
        self.err_sum.zero_()
        self.window, self.seen, self.window_start = 0, 0, time.perf_counter()
        if at_save:
            self.save(best)
        self.in_log_point = False
        return stops > 0

    def _check_divergence(self, mean_loss: float, lr: float) -> None:
        state = self.state
        if not state.first_loss and math.isfinite(mean_loss):
            state.first_loss = mean_loss
        limit = EXPLODED * max(state.first_loss, math.log(len(self.data.classes)))
        if math.isfinite(mean_loss) and mean_loss <= limit:
            return
        last = self.run_dir / "last.pt"
        kept = (f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written before it")
        what = (f"became {mean_loss}" if not math.isfinite(mean_loss) else
                f"exploded to {mean_loss:.4g}, over {EXPLODED:g}x its start ({state.first_loss:.3g})")
        raise TrainingDiverged(f"the training loss {what} by iteration {state.step} (lr {lr:g}); {kept}. "
                               "A lower --lr, or a look at the data, may help")

    def _estimate(self, ips: float) -> None:
        cfg, state = self.cfg, self.state
        if self.estimated or self.device.type != "cpu" or not self.dist.is_main or state.step >= cfg.iters:
            return
        self.estimated = True
        hours = (cfg.iters - state.step) * cfg.batch_size / ips / 3600
        self.bar.write(f"at {ips:,.0f} images/s on this CPU the remaining {cfg.iters - state.step:,} iterations "
                       f"take about {hours:.1f} h; --iters N shortens the run (the lr milestones scale with "
                       f"it), and Ctrl-C stops it resumably (--resume {self.cfg.out})")

    def interrupted(self, signame: str, saveable: bool) -> RunInterrupted:
        """Stopped between steps: the state after the last finished step is consistent, so keep it, with
        the metric window it had gathered. Stopped inside a log point or a step: keep the last checkpoint."""
        state = self.state
        saveable = saveable and not self.in_log_point and math.isfinite(self.loss_sum.item())
        if saveable:
            state.window_loss, state.window_errors = self.loss_sum.item(), int(self.err_sum.item())
            state.window_steps = self.window
            self.save()
        self.bar.close()
        return RunInterrupted(signame, state.step, self.run_dir.path, saveable)

    def finish(self) -> dict[str, Any]:
        self.bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        summary = self._summary()
        self.run_dir.release()
        return summary

    def run(self, stop_after: int | None = None) -> dict[str, Any]:
        state = self.state
        end = self.begin(stop_after)
        consistent = True  # False while a step is half done: nothing to save then
        with StopSignals() as signals:
            try:
                while state.step < end:
                    lr = learning_rate(self.cfg, state, self.warmup)
                    x, y = self.data.train.batch(state.step)
                    consistent = False
                    loss, errors = self.step(x, y, lr)
                    state.step += 1
                    consistent = True
                    if self.account(loss, errors, len(y), lr, end, stop=signals.requested is not None):
                        raise self.interrupted(signals.requested or "SIGINT", saveable=True)
            except KeyboardInterrupt:
                raise self.interrupted("SIGINT", saveable=consistent) from None
        return self.finish()

    def _evaluate(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The validation metrics, and best.pt's record when this evaluation is the best so far."""
        state = self.state
        if self.data.val is None:
            return {}, None
        result = evaluate(self.model, self.data.val, self.amp_dtype)
        val_error = result["top1_error"]
        best = None
        if val_error < state.best_val_error:
            state.best_val_error, state.evals_since_best = val_error, 0
            best = {"chosen_on": self.data.split["val"], "iteration": state.step, "error": val_error}
        else:
            state.evals_since_best += 1
            if self.cfg.schedule == "plateau" and state.evals_since_best >= self.cfg.plateau_patience:
                state.lr_scale *= 0.1
                state.evals_since_best = 0
        return {"val_loss": result["loss"], "val_error": val_error, "val_top5_error": result["top5_error"]}, best

    def _line(self, r: dict[str, Any]) -> str:
        split = SPLIT_NAMES.get(self.data.split["val"], self.data.split["val"])
        val = f" | {split} loss {r['val_loss']:.4f} err {r['val_error']:.2%}" if "val_error" in r else ""
        return (f"iter {r['iteration']:>6}/{self.cfg.iters} lr {r['lr']:g} | train loss {r['train_loss']:.4f} "
                f"err {r['train_error']:.2%}{val} | {r['images_per_s']:,.0f} img/s")

    def _summary(self) -> dict[str, Any]:
        evaluated = [r for r in self.run_dir.metrics() if "val_error" in r] if self.dist.is_main else []
        last = evaluated[-1] if evaluated else {}
        summary = {
            "model": self.cfg.model, "iterations": self.state.step, "target_iterations": self.cfg.iters,
            "finished": self.state.step >= self.cfg.iters, "val_split": self.data.split["val"],
            "final_val_error": last.get("val_error"), "final_iteration_evaluated": last.get("iteration"),
            "best_val_error": (self.state.best_val_error if math.isfinite(self.state.best_val_error) else None),
            "best_chosen_on": self.data.split["val"] if math.isfinite(self.state.best_val_error) else None,
            "train_seconds": self.state.train_seconds, "device": str(self.device), "torch": torch.__version__,
            "run_dir": str(self.run_dir.path),
        }
        if self.dist.is_main:
            self.run_dir.write_json("summary.json", summary)
        return summary


def train(cfg: TrainConfig, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    trainer = Trainer(cfg, resume=resume)
    try:
        return trainer.run(stop_after)
    finally:
        trainer.run_dir.release()
        distributed.teardown(trainer.dist)


def load_run_config(run_dir: Path) -> TrainConfig:
    """The configuration a run was started with: config.json, or the checkpoint's copy of it."""
    if run_dir.is_file():
        raise UserError(f"--resume {run_dir}: a file; give the run's folder")
    if not (run_dir / "last.pt").is_file():
        raise UserError(f"--resume {run_dir}: no last.pt there, nothing to resume")
    path = run_dir / "config.json"
    if path.is_file():
        try:
            values = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{path} is damaged (not JSON); delete it to resume from the copy inside last.pt") from None
        return from_dict(values, str(path))
    return from_dict(load_checkpoint(run_dir / "last.pt", training=True)["config"], str(run_dir / "last.pt"))
