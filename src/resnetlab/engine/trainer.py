"""The training loop: iteration-based schedules as the paper counts, exact resume, atomic checkpoints.

Batch i is a pure function of (seed, i) (see data.device_loader), the model has no randomness, and the
checkpoint carries model, optimizer and schedule state: resuming from step k replays steps k.. exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from resnetlab.data import DeviceLoader, Normalization, holdout_split, open_dataset
from resnetlab.data.arrays import ArrayDataset
from resnetlab.data.imagenet import StreamLoader, eval_loader
from resnetlab.engine import distributed
from resnetlab.engine.checkpoint import load_checkpoint, save_checkpoint, write_json
from resnetlab.engine.config import TrainConfig
from resnetlab.engine.evaluate import evaluate
from resnetlab.errors import UserError
from resnetlab.models import create_model, is_cifar


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class RunState:
    step: int = 0
    warm_done: bool = False
    lr_scale: float = 1.0
    best_val_error: float = math.inf
    evals_since_best: int = 0
    train_seconds: float = 0.0


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


def uses_warmup(cfg: TrainConfig) -> bool:
    # Sec. 4.2: ResNet-110 (and 1202) start at lr 0.01 until the training error is below 80%.
    if cfg.warmup == "auto":
        return is_cifar(cfg.model) and int("".join(c for c in cfg.model if c.isdigit())) >= 110
    return cfg.warmup == "on"


def learning_rate(cfg: TrainConfig, state: RunState, warmup: bool) -> float:
    if warmup and not state.warm_done:
        return cfg.warmup_lr
    if cfg.schedule == "step":
        return cfg.lr / 10 ** sum(state.step >= m for m in cfg.milestones)
    return cfg.lr * state.lr_scale


class Data:
    """Training batches, validation batches and what a checkpoint must remember about the data."""

    def __init__(self, cfg: TrainConfig, device: torch.device, dist: distributed.DistInfo, channels_last: bool):
        ds = open_dataset(cfg.data, skip_corrupt=cfg.skip_corrupt)
        self.classes = ds.classes
        val_name = cfg.val
        if val_name == "auto":
            val_name = next((s for s in ("test", "val") if s in ds.splits), "holdout" if cfg.holdout else "none")
        elif val_name == "test" and "test" not in ds.splits:
            raise UserError(f"--val test: {cfg.data} has no test split")
        train = ds.splits["train"]
        self.split: dict[str, Any] = {"val": val_name}
        val = ds.splits.get(val_name)
        if val_name == "holdout":
            if not ds.in_memory:
                raise UserError("--val holdout is supported for in-memory (small-image) data; give a val/ folder")
            train_idx, val_idx = holdout_split(train.labels, cfg.holdout, seed=0)
            self.split.update(holdout=cfg.holdout, holdout_seed=0, val_indices=val_idx.tolist(),
                              val_sha1=hashlib.sha1(val_idx.tobytes()).hexdigest())
            train, val = train.subset(train_idx), train.subset(val_idx)
        self.split.update(train_images=len(train), val_images=len(val) if val is not None else 0)

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
        if cfg.batch_size % dist.world_size:
            raise UserError(f"--batch-size {cfg.batch_size} does not split evenly over {dist.world_size} processes")


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.out)
        self.device = resolve_device(cfg.device)
        self.dist = distributed.setup(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        cuda = self.device.type == "cuda"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None,
                          "auto": torch.bfloat16 if cuda else None}[cfg.amp]
        # channels_last helps on both: 460 vs 401 images/s for ResNet-20 on 2 CPU cores (benchmarks/results).
        channels_last = cfg.channels_last != "off"
        self.tensorboard = None
        if self.dist.is_main:
            self._prepare_run_dir(resume)
            if cfg.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:
                    raise UserError("--tensorboard needs the tensorboard package: pip install 'resnetlab[tensorboard]'") from None
                self.tensorboard = SummaryWriter(str(self.run_dir / "tensorboard"))
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
        if resume:
            self._restore(load_checkpoint(self.run_dir / "last.pt"))
        self.net: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if cuda else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile != "off":
            self.net = torch.compile(self.net, mode=None if cfg.compile == "default" else cfg.compile)

    # -- run directory and checkpoints ---------------------------------------------------------------
    def _prepare_run_dir(self, resume: bool) -> None:
        if not self.cfg.out:
            raise UserError("--out RUN_DIR is required")
        if not resume and (self.run_dir / "last.pt").exists():
            raise UserError(f"{self.run_dir} already holds a run: resume it with --resume {self.run_dir}, "
                            "or choose another --out")
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise UserError(f"--out {self.run_dir}: cannot write there ({e.strerror})") from None

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
        if ckpt["model_name"] != self.cfg.model:
            raise UserError(f"{self.run_dir / 'last.pt'} is a {ckpt['model_name']} run, not {self.cfg.model}")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = RunState(**ckpt["state"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if torch.cuda.is_available() and ckpt["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])

    def save(self, best: bool = False) -> None:
        if not self.dist.is_main:
            return
        payload = self._payload()
        save_checkpoint(self.run_dir / "last.pt", payload)
        if best:
            save_checkpoint(self.run_dir / "best.pt", payload)

    def log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
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
        """Write the run's config and split, open the progress bar; returns the step to stop at."""
        cfg = self.cfg
        if self.dist.is_main:
            write_json(self.run_dir / "config.json", cfg.to_dict())
            write_json(self.run_dir / "split.json", self.data.split)
        self.bar = tqdm(total=cfg.iters, initial=self.state.step, desc=cfg.model, unit="it", dynamic_ncols=True,
                        disable=None if self.dist.is_main and show_bar else True)
        self.loss_sum = torch.zeros((), device=self.device)
        self.err_sum = torch.zeros((), device=self.device, dtype=torch.long)
        self.window, self.seen, self.window_start = 0, 0, time.perf_counter()
        self.estimated = False
        self.model.train()
        return cfg.iters if stop_after is None else min(cfg.iters, self.state.step + stop_after)

    def account(self, loss: torch.Tensor, errors: torch.Tensor, batch: int, lr: float, end: int,
                sync: Callable[[], None] | None = None) -> None:
        """Book one finished step; at log points check, log, evaluate and checkpoint.

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
            return
        # A log point: the only place the host waits for the device between evaluations.
        mean_loss = self.loss_sum.item() / self.window
        train_error = self.err_sum.item() / (self.window * batch)
        elapsed = time.perf_counter() - self.window_start
        state.train_seconds += elapsed
        ips = self.seen * self.dist.world_size / max(elapsed, 1e-9)
        if not distributed.all_ok(self.dist, math.isfinite(mean_loss), self.device):
            raise TrainingDiverged(f"the training loss became {mean_loss} by iteration {state.step} "
                                   f"(lr {lr}); the last good checkpoint is {self.run_dir / 'last.pt'}")
        if self.warmup and not state.warm_done and train_error < cfg.warmup_until_error:
            state.warm_done = True
        self.bar.set_postfix(loss=f"{mean_loss:.3f}", err=f"{train_error:.1%}", lr=f"{lr:g}", img_s=f"{ips:,.0f}")
        if not self.estimated and self.device.type == "cpu" and self.dist.is_main and state.step < cfg.iters:
            self.estimated = True
            hours = (cfg.iters - state.step) * cfg.batch_size / ips / 3600
            self.bar.write(f"at {ips:,.0f} images/s on this CPU the remaining {cfg.iters - state.step:,} iterations "
                           f"take about {hours:.1f} h; --iters N shortens the run (the lr milestones scale with "
                           f"it), and Ctrl-C stops it resumably (--resume {self.run_dir})")
        record = {"iteration": state.step, "lr": lr, "train_loss": mean_loss, "train_error": train_error,
                  "images_per_s": ips}
        if (at_eval or at_save) and sync is not None:
            sync()
        if at_eval:
            record.update(self._evaluate())
            self.bar.write(self._line(record))
        if at_eval or state.step % cfg.log_every == 0:
            self.log(record)
        if at_save:
            self.save(best=at_eval and record.get("val_error", math.inf) <= state.best_val_error)
        self.loss_sum.zero_()
        self.err_sum.zero_()
        self.window, self.seen, self.window_start = 0, 0, time.perf_counter()

    def interrupted(self) -> None:
        """Ctrl-C between steps: the state after the last finished step is consistent, so keep it."""
        if math.isfinite(self.loss_sum.item()):
            self.save()
        self.bar.close()

    def finish(self) -> dict[str, Any]:
        self.bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        return self._summary()

    def run(self, stop_after: int | None = None) -> dict[str, Any]:
        state = self.state
        end = self.begin(stop_after)
        consistent = True  # False while a step is half done: nothing to save then
        try:
            while state.step < end:
                lr = learning_rate(self.cfg, state, self.warmup)
                x, y = self.data.train.batch(state.step)
                consistent = False
                loss, errors = self.step(x, y, lr)
                state.step += 1
                consistent = True
                self.account(loss, errors, len(y), lr, end)
        except KeyboardInterrupt:
            if consistent:
                self.interrupted()
            raise
        return self.finish()

    def _evaluate(self) -> dict[str, Any]:
        state = self.state
        if self.data.val is None:
            return {}
        result = evaluate(self.model, self.data.val, self.amp_dtype)
        val_error = result["top1_error"]
        if val_error < state.best_val_error:
            state.best_val_error, state.evals_since_best = val_error, 0
        else:
            state.evals_since_best += 1
            if self.cfg.schedule == "plateau" and state.evals_since_best >= self.cfg.plateau_patience:
                state.lr_scale *= 0.1
                state.evals_since_best = 0
        return {"val_loss": result["loss"], "val_error": val_error, "val_top5_error": result["top5_error"]}

    def _line(self, r: dict[str, Any]) -> str:
        val = f" | val loss {r['val_loss']:.4f} err {r['val_error']:.2%}" if "val_error" in r else ""
        return (f"iter {r['iteration']:>6}/{self.cfg.iters} lr {r['lr']:g} | train loss {r['train_loss']:.4f} "
                f"err {r['train_error']:.2%}{val} | {r['images_per_s']:,.0f} img/s")

    def _summary(self) -> dict[str, Any]:
        last = {}
        path = self.run_dir / "metrics.jsonl"
        if self.dist.is_main and path.exists():
            for line in path.read_text().splitlines():
                rec = json.loads(line)
                if "val_error" in rec:
                    last = rec
        summary = {
            "model": self.cfg.model, "iterations": self.state.step, "target_iterations": self.cfg.iters,
            "finished": self.state.step >= self.cfg.iters, "val_split": self.data.split["val"],
            "final_val_error": last.get("val_error"), "best_val_error": (self.state.best_val_error
                                                                          if math.isfinite(self.state.best_val_error) else None),
            "train_seconds": self.state.train_seconds, "device": str(self.device), "torch": torch.__version__,
            "run_dir": str(self.run_dir),
        }
        if self.dist.is_main:
            write_json(self.run_dir / "summary.json", summary)
        return summary


def train(cfg: TrainConfig, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    trainer = Trainer(cfg, resume=resume)
    try:
        return trainer.run(stop_after)
    finally:
        distributed.teardown(trainer.dist)


def load_run_config(run_dir: Path) -> TrainConfig:
    path = run_dir / "config.json"
    if not (run_dir / "last.pt").is_file():
        raise UserError(f"--resume {run_dir}: no last.pt there, nothing to resume")
    ckpt_cfg = load_checkpoint(run_dir / "last.pt")["config"]
    values = json.loads(path.read_text()) if path.is_file() else ckpt_cfg
    return TrainConfig(**values)


