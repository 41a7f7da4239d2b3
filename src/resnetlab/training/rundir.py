"""A run folder: config, split, metrics, checkpoints and summary of one training run, owned by one process.

Guarantees: a folder that is not a resnetlab run is never written into; two processes never share a run
(an advisory lock names the holder); metrics.jsonl never holds a line from beyond the checkpoint a run
resumes from, so a resumed run's metrics equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import errno
import os
import tempfile
from pathlib import Path
from typing import Any

from resnetlab.errors import RunInUse, UserError
from resnetlab.files import append_whole, atomic_write, is_temporary_of
from resnetlab.runtime.checkpoint import save_checkpoint, write_json

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"
MARKER = ".resnetlab-run"  # written first into a folder a run takes: what follows in it is resnetlab's
FINAL_WEIGHTS, FINAL_RECORD = "final.safetensors", "final.json"  # a finished run slimmed (inference/run_weights.py)
# What a run writes; a non-empty folder holding none of these is someone else's and is refused.
RUN_FILES = ("config.json", "split.json", "metrics.jsonl", "last.pt", "best.pt", "summary.json", LOCK, "tensorboard",
             MARKER, "curves.png", FINAL_WEIGHTS, FINAL_RECORD)
# What a start that never reached its first checkpoint leaves: a fresh start may clear these, and nothing else.
UNFINISHED_START = (MARKER, LOCK, "config.json", "split.json", "metrics.jsonl", "tensorboard", "curves.png")


WRITE_PROBE = ".write-test."


def _orphan(name: str) -> bool:
    """A temporary file a run left when it was killed inside a write of one of its files (atomic_write's
    `.last.pt.<random>.tmp.pt`: the file it was writing is as it was before) or inside its write probe."""
    return name.startswith(WRITE_PROBE) or any(is_temporary_of(name, own) for own in RUN_FILES)


def _open_new_or_own(path: Path, flags: int) -> int:
    """Open (creating it with the umask's mode) a file of the run folder, never through a symbolic link: a link
    planted at a run's lock or metrics would make the run write into its target (OSError ELOOP instead)."""
    return os.open(path, flags | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)


def _why_not_opened(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "it is a symbolic link, and a link planted there is never followed: remove it"
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (f"{e.strerror}; a run continues where it can write (copy the folder somewhere writable and give "
                "that)")
    return e.strerror or str(e)


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
        if (p / FINAL_RECORD).exists():
            raise UserError(f"{p} already holds a finished run (slimmed to its final weights): choose another --out")
        entries = sorted(e.name for e in os.scandir(p))
        if not entries:
            return
        if not any(name in RUN_FILES for name in entries):
            raise UserError(f"--out {p}: the folder holds other files ({', '.join(entries[:3])}) and is not "
                            "a resnetlab run; choose a new or empty folder")
        unmarked = [name for name in entries if name != LOCK and not _orphan(name)]
        if MARKER not in entries and unmarked:
            # A user's config.json or metrics.jsonl bears a run's file name, not its mark: never cleared
            raise UserError(f"--out {p}: the folder holds {', '.join(unmarked[:3])} without the mark resnetlab "
                            f"writes into its runs ({MARKER}), so they are not a run's and are never replaced; choose "
                            "a new or empty folder")
        foreign = [name for name in entries if name not in UNFINISHED_START and not _orphan(name)]
        if foreign:  # another's files, or results of a run whose last.pt is gone: never replaced
            raise UserError(f"--out {p}: the folder holds {', '.join(foreign[:3])}, and a new run would replace "
                            "what is there; choose a new or empty folder (or --resume a run whose last.pt is there)")

    def take(self, resume: bool, step: int = 0) -> None:
        """Create and lock the folder; a fresh run clears what an unfinished earlier start left behind,
        a resumed one drops the metrics logged after its checkpoint."""
        self.check(resume)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock()
            # Can we write here? A new file under an unpredictable name (never a link planted in advance).
            fd, probe = tempfile.mkstemp(prefix=WRITE_PROBE, dir=self.path)
            os.close(fd)
            os.unlink(probe)
            if not resume:
                os.close(_open_new_or_own(self.path / MARKER, os.O_WRONLY))
        except OSError as e:
            raise UserError(f"--out {self.path}: cannot write there ({e.strerror})") from None
        for entry in os.scandir(self.path):  # ours, and no other process writes here while we hold the lock
            if _orphan(entry.name) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        if resume:
            if (self.path / "metrics.jsonl").is_symlink():
                raise UserError(f"{self.path / 'metrics.jsonl'} is a link; a run's metrics are never written through "
                                "one: replace it with the file itself")
            self.truncate_metrics(step)
        else:
            for name in ("metrics.jsonl", "summary.json", "best.pt"):
                (self.path / name).unlink(missing_ok=True)

    def tensorboard_dir(self) -> Path:
        """Where --tensorboard writes its event files: the run's own folder, never through a link planted there."""
        path = self.path / "tensorboard"
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise UserError(f"{path} is a link or a file; a run's TensorBoard events are written into a folder of "
                            "its own, never through one: remove it")
        return path

    def _lock(self) -> None:
        if fcntl is None:
            return
        try:
            fd = _open_new_or_own(self.path / LOCK, os.O_RDWR)
        except OSError as e:
            raise UserError(f"{self.path / LOCK}: cannot open the run's lock: {_why_not_opened(e)}") from None
        f = os.fdopen(fd, "r+")
        try:
            # A POSIX record lock belongs to this process: DataLoader workers forked from it do not inherit
            # it (as they would an flock), so it ends with the run, or with the process when killed.
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunInUse(f"{self.path} is in use by {holder} ({self.path / LOCK}); wait for it to finish, "
                           "or choose another --out", holder) from None
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
        fd = _open_new_or_own(self.path / "metrics.jsonl", os.O_WRONLY | os.O_APPEND)
        try:
            append_whole(fd, (json.dumps(record) + "\n").encode(), self.path / "metrics.jsonl")
        finally:
            os.close(fd)

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        records = []
        for line in path.read_bytes().decode("utf-8", "replace").splitlines():
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                continue  # a line cut short by a crash mid-write
            if isinstance(record, dict) and isinstance(record.get("iteration"), int):
                records.append(record)  # anything else is not a line this run wrote
        return records

    def truncate_metrics(self, step: int) -> None:
        """Keep the lines up to `step`: later ones were logged after the checkpoint and will be logged again."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return
        kept = [r for r in self.metrics() if r.get("iteration", 0) <= step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        if text != path.read_bytes().decode("utf-8", "replace"):
            atomic_write(path, lambda tmp: tmp.write_text(text))
