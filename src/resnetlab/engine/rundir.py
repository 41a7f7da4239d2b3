"""A run folder: config, split, metrics, checkpoints and summary of one training run, owned by one process.

Guarantees: a folder that is not a resnetlab run is never written into; two processes never share a run
(an advisory lock names the holder); metrics.jsonl never holds a line from beyond the checkpoint a run
resumes from, so a resumed run's metrics equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from resnetlab.engine.checkpoint import atomic_write, save_checkpoint, write_json
from resnetlab.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"
# What a run writes; a non-empty folder holding none of these is someone else's and is refused.
RUN_FILES = ("config.json", "split.json", "metrics.jsonl", "last.pt", "best.pt", "summary.json", LOCK, "tensorboard")


class RunDir:
    def __init__(self, path: str | Path) -> None:
        if not str(path):
            raise UserError("--out RUN_DIR is required")
        self.path = Path(path)
        self._lock_file: Any = None

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # -- taking the folder ---------------------------------------------------------------------------
    def check(self, resume: bool) -> None:
        """Refuse, before any work is done, a folder this run may not use."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise UserError(f"--out {p}: a file is there, not a folder")
        if resume or not p.is_dir():
            return
        if (p / "last.pt").exists():
            raise UserError(f"{p} already holds a run: resume it with --resume {p}, or choose another --out")
        entries = [e.name for e in os.scandir(p)]
        if entries and not any(name in RUN_FILES for name in entries):
            raise UserError(f"--out {p}: the folder holds other files ({', '.join(sorted(entries)[:3])}) and is not "
                            "a resnetlab run; choose a new or empty folder")

    def take(self, resume: bool, step: int = 0) -> None:
        """Create and lock the folder; a fresh run clears what an unfinished earlier start left behind,
        a resumed one drops the metrics logged after its checkpoint."""
        self.check(resume)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock()
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise UserError(f"--out {self.path}: cannot write there ({e.strerror})") from None
        if resume:
            self.truncate_metrics(step)
        else:
            for name in ("metrics.jsonl", "summary.json", "best.pt"):
                (self.path / name).unlink(missing_ok=True)

    def _lock(self) -> None:
        if fcntl is None:
            return
        f = open(self.path / LOCK, "a+")
        try:
            # A POSIX record lock belongs to this process: DataLoader workers forked from it do not inherit
            # it (as they would an flock), so it ends with the run, or with the process when killed.
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise UserError(f"{self.path} is in use by {holder} ({self.path / LOCK}); wait for it to finish, "
                            "or choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}\n")
        f.flush()
        self._lock_file = f  # held open: the lock lasts as long as this process, and dies with it

    def release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- what a run writes ---------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> None:
        write_json(self.path / name, obj)

    def save(self, name: str, payload: dict[str, Any]) -> None:
        """A checkpoint, after the metrics it covers are on disk: a power loss never leaves a checkpoint whose
        metrics lines were lost (a resumed run would not log them again)."""
        metrics = self.path / "metrics.jsonl"
        if metrics.is_file():
            with open(metrics, "rb") as f:
                os.fsync(f.fileno())
        save_checkpoint(self.path / name, payload)

    def log(self, record: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash mid-write
        return records

    def truncate_metrics(self, step: int) -> None:
        """Keep the lines up to `step`: later ones were logged after the checkpoint and will be logged again."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return
        kept = [r for r in self.metrics() if r.get("iteration", 0) <= step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        if text != path.read_text():
            atomic_write(path, lambda tmp: tmp.write_text(text))
