"""Helpers for tests that drive the CLI in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch

from resnetlab.cli.main import main
from resnetlab.runtime.checkpoint import load_checkpoint

# A CIFAR net small enough to train a few steps in a second on 2 cores.
TINY = ["--model", "cifar_resnet8", "--batch-size", "32", "--lr", "0.1", "--warmup-lr", "0.01", "--log-every", "2", "--eval-every", "4", "--workers", "0"]


def refused(argv: list[str], message: str, capsys) -> str:
    """Run the CLI; assert exit 2 with one line on stderr holding `message` and no traceback."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, (rc, err)
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@contextmanager
def run_held_by_another_process(run_dir: Path):
    """Another process takes `run_dir`'s lock (as a second `train` would) and holds it; yields that process."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from resnetlab.training.rundir import RunDir; "
         "r = RunDir(sys.argv[1]); r.take(resume=False); print('held', flush=True); time.sleep(120)", str(run_dir)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def same_weights(a: Path, b: Path) -> bool:
    sa, sb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def without_speed(records: list[dict]) -> list[dict]:
    """Metric records less the throughput and data wait, measurements of the moment, not of the run."""
    return [{k: v for k, v in r.items() if k not in ("images_per_s", "data_wait")} for r in records]


@contextmanager
def mounted_tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A real small file system at `mount` (tmpfs; mounting needs root, as on the CI machines), to fill or to
    remount read-only; the test is skipped where it cannot be mounted."""
    mount.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
