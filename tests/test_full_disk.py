"""A full disk is told as one line, and nothing written before is lost (issue 40.22): a checkpoint whose write
fills the disk (torch says only "unexpected pos"), a .pt2 export (torch.export.save used to abort the process,
exit 134), and a metrics line cut short (it used to stay torn and run into the next line)."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnetlab.cli.main import main
from resnetlab.errors import UserError
from resnetlab.runtime.checkpoint import save_checkpoint
from resnetlab.training.rundir import RunDir
from tests.clitools import mounted_tmpfs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_disk(tmp_path):
    """A real 128 KiB file system (tmpfs; mounting needs root, as on the CI machines)."""
    with mounted_tmpfs(tmp_path / "small", "128k") as mount:
        yield mount


def test_a_checkpoint_that_fills_the_disk_says_so_and_keeps_the_previous_one(small_disk):
    path = small_disk / "last.pt"
    save_checkpoint(path, {"w": torch.zeros(1000)})
    before = path.read_bytes()
    with pytest.raises(UserError, match=r"last.pt: the disk is full; .*last.pt keeps its previous contents"):
        save_checkpoint(path, {"w": torch.zeros(1_000_000)})
    assert path.read_bytes() == before and sorted(p.name for p in small_disk.iterdir()) == ["last.pt"]


def test_a_pt2_export_onto_a_full_disk_is_one_line_not_an_abort(tiny_cifar, tmp_path, small_disk):
    run = tmp_path / "run"
    assert main(["train", "--model", "cifar_resnet8", "--data", str(tiny_cifar), "--out", str(run), "--iters", "2",
                 "--device", "cpu", "--fast", "off", "--batch-size", "16"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    for fmt, name in (("pt2", "m.pt2"), ("torchscript", "m.ts")):
        done = subprocess.run([sys.executable, "-m", "resnetlab", "export", "--checkpoint", str(run / "last.pt"),
                               "--out", str(small_disk / name), "--format", fmt, "--no-check"],
                              capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 2, done.stderr[-1500:]
        assert f"cannot write {small_disk / name}: the disk is full" in done.stderr
        assert "Traceback" not in done.stderr
    assert list(small_disk.iterdir()) == []


def test_a_metrics_line_cut_short_is_taken_back(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.log({"iteration": 1, "loss": 2.0})
    real_write = os.write

    def half_then_full(fd, data):
        if len(data) > 8:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(UserError, match="metrics.jsonl: the disk is full; its earlier contents are kept"):
        run.log({"iteration": 2, "loss": 1.5, "note": "x" * 40})
    monkeypatch.setattr(os, "write", real_write)
    run.log({"iteration": 3, "loss": 1.0})
    assert [r["iteration"] for r in run.metrics()] == [1, 3]
    assert (run.path / "metrics.jsonl").read_text().count("\n") == 2
