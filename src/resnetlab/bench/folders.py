"""`resnetlab train` on an image folder against timm's `train.py`, side by side in one run.

Each trainer runs as the user would run it, in its own process, on the same folder, model, batch, precision,
layout and number of DataLoader workers. Its speed is read from its own progress lines, each stamped when it
arrives: images/s between the first line past the warm-up (so that start-up, compiling and the first steps are
not counted) and the last. Both print a line every `log_every` iterations after the step has run (on the CPU
every op is synchronous), so the two are timed alike. timm's `train.py` is not in its wheel: give the script
from a checkout of timm's repository (--timm-train); without it only resnetlab's rows are measured.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from resnetlab.data.folders import scan
from resnetlab.errors import UserError

# The progress lines each trainer prints: resnetlab's "iter   40/60 ...", timm's "Train: 2 [  10/20 ( 55%)] ...".
RESNETLAB_LINE = re.compile(r"\biter\s+(\d+)/(\d+)")
TIMM_LINE = re.compile(r"Train: (\d+) \[\s*(\d+)/(\d+)")
# Iterations not timed: start-up, compiling, the DataLoader's workers filling their queue.
WARMUP = 20


@dataclass(frozen=True)
class FolderBench:
    data: Path
    model: str = "resnet18"
    batch_size: int = 32
    iters: int = 80  # per trainer, warm-up included
    warmup: int = WARMUP
    log_every: int = 10
    workers: int = 2
    amp: str = "bf16"
    img_size: int = 224
    timm_train: Path | None = None
    trainers: tuple[str, ...] = ("resnetlab", "resnetlab-compiled", "timm")


@dataclass
class Timed:
    """One trainer's run: (seconds since start, iterations done) for each progress line, and its exit."""
    name: str
    points: list[tuple[float, int]] = field(default_factory=list)
    returncode: int | None = None
    tail: str = ""

    def images_per_s(self, batch_size: int, warmup: int) -> float | None:
        timed = [(t, n) for t, n in self.points if n >= warmup]
        if len(timed) < 2 or timed[-1][1] == timed[0][1]:
            return None
        (t0, n0), (t1, n1) = timed[0], timed[-1]
        return (n1 - n0) * batch_size / (t1 - t0)


def iterations_done(line: str, trainer: str) -> int | None:
    """Iterations a progress line says are done, or None for any other line."""
    if trainer.startswith("resnetlab"):
        m = RESNETLAB_LINE.search(line)
        return int(m.group(1)) if m else None
    m = TIMM_LINE.search(line)
    if not m:
        return None
    epoch, batch, per_epoch = (int(g) for g in m.groups())
    return epoch * per_epoch + batch + 1  # timm numbers its batches from 0 within each epoch


def commands(bench: FolderBench, out: Path) -> dict[str, list[str]]:
    """Each trainer's command line; the same model, batch, precision, layout and workers."""
    resnetlab = [sys.executable, "-m", "resnetlab", "train", "--model", bench.model, "--recipe", "finetune",
                 "--normalization", "imagenet", "--data", str(bench.data), "--batch-size", str(bench.batch_size),
                 "--iters", str(bench.iters), "--val", "none", "--workers", str(bench.workers),
                 "--amp", bench.amp, "--channels-last", "on", "--img-size", str(bench.img_size),
                 "--log-every", str(bench.log_every), "--save-every", "0"]
    found = {"resnetlab": resnetlab + ["--fast", "off", "--out", str(out / "resnetlab")],
             "resnetlab-compiled": resnetlab + ["--fast", "on", "--out", str(out / "resnetlab-compiled")]}
    if bench.timm_train is not None:
        split = "train" if (bench.data / "train").is_dir() else ""
        images = len(scan(bench.data / split if split else bench.data))
        epochs = -(-bench.iters * bench.batch_size // max(images, 1))
        found["timm"] = [sys.executable, str(bench.timm_train), "--data-dir", str(bench.data), "--train-split", split,
                         "--val-split", "", "--model", bench.model, "-b", str(bench.batch_size),
                         "--epochs", str(epochs), "--workers", str(bench.workers), "--channels-last", "--amp",
                         "--amp-dtype", {"bf16": "bfloat16", "fp16": "float16"}.get(bench.amp, "float32"),
                         "--device", "cpu", "--img-size", str(bench.img_size), "--log-interval", str(bench.log_every),
                         "--opt", "sgd", "--lr", "0.01", "--momentum", "0.9", "--weight-decay", "1e-4",
                         "--sched", "step", "--warmup-epochs", "0", "--color-jitter", "0",
                         "--output", str(out / "timm")]
        if bench.amp == "off":
            found["timm"].remove("--amp")
    return {name: cmd for name, cmd in found.items() if name in bench.trainers}


def run_timed(name: str, command: list[str], timeout: float) -> Timed:
    """Run one trainer, stamping each progress line as it arrives (\\r-separated progress bars too)."""
    timed = Timed(name)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, bufsize=0)
    pending, lines = b"", []
    try:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            now = time.perf_counter() - start
            if now > timeout:
                proc.kill()
                raise UserError(f"bench --what folders: {name} ran past {timeout:.0f} s; give fewer --steps")
            *complete, pending = re.split(rb"[\r\n]", pending + chunk)
            for raw in complete:
                line = raw.decode(errors="replace")
                lines.append(line)
                done = iterations_done(line, name)
                if done is not None:
                    timed.points.append((now, done))
    finally:
        timed.returncode = proc.wait()
    timed.tail = "\n".join(line for line in lines[-15:] if line.strip())
    return timed


def measure(bench: FolderBench, timeout: float = 1800.0) -> dict:
    """Each trainer in turn; images/s at steady state, and each one's ratio to timm's where timm ran."""
    if not bench.data.is_dir():
        raise UserError(f"bench --what folders: --data {bench.data} is not a folder of images")
    if bench.timm_train is not None and not bench.timm_train.is_file():
        raise UserError(f"bench --what folders: --timm-train {bench.timm_train} is not a file (timm's train.py, "
                        f"from a checkout of github.com/huggingface/pytorch-image-models)")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="resnetlab-bench-") as tmp:
        for name, command in commands(bench, Path(tmp)).items():
            print(f"  {name}: {' '.join(command[:2])} ... ({bench.iters} iterations)", flush=True)
            timed = run_timed(name, command, timeout)
            rate = timed.images_per_s(bench.batch_size, bench.warmup)
            if timed.returncode != 0 or rate is None:
                raise UserError(f"bench --what folders: {name} exited with {timed.returncode} after "
                                f"{len(timed.points)} progress lines:\n{timed.tail}")
            rows[name] = rate
            print(f"  {name}: {rate:,.1f} images/s (iterations {bench.warmup}-{timed.points[-1][1]})", flush=True)
    result = {"folder_images_per_s": rows}
    if "timm" in rows:
        result["ratio_to_timm"] = {name: rate / rows["timm"] for name, rate in rows.items() if name != "timm"}
    return result
