"""Fault injection: kills, signals and damaged files meet a training run, and nothing is lost.

Kill points are drawn at random; the seed is printed (pytest shows it on failure) and can be fixed
with RESNETLAB_FAULT_SEED to replay a failure.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resnetlab.runtime.checkpoint import load_checkpoint
from tests.clitools import TINY, metrics, same_weights, without_speed

REPO = Path(__file__).resolve().parents[2]
# The checkout's own sources first, for the subprocesses too (tests/ddp_probe.py imports from both).
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
       "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}


def _train(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "resnetlab", "train", *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def _lines(run_dir: Path) -> int:
    try:
        return len((run_dir / "metrics.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def _wait_for(proc: subprocess.Popen, run_dir: Path, lines: int, timeout: float = 120) -> bool:
    """Wait until the run has logged `lines` lines; False if it ended first."""
    deadline = time.monotonic() + timeout
    while _lines(run_dir) < lines:
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the run logged nothing in time"
        time.sleep(0.02)
    return True


def _fault_seed() -> int:
    seed = int(os.environ.get("RESNETLAB_FAULT_SEED", random.SystemRandom().randrange(1 << 30)))
    print(f"fault seed {seed} (replay with RESNETLAB_FAULT_SEED={seed})")
    return seed


RUN = [*TINY, "--iters", "24", "--log-every", "1", "--save-every", "1", "--eval-every", "8"]


@pytest.fixture(scope="module")
def straight(tiny_cifar, tmp_path_factory) -> Path:
    """The uninterrupted run every faulted run must equal, made in a subprocess like them."""
    out = tmp_path_factory.mktemp("straight") / "run"
    proc = _train(*RUN, "--data", str(tiny_cifar), "--out", str(out))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return out


def test_sigkill_at_random_moments_then_resume_is_bit_exact(straight, tiny_cifar, tmp_path):
    rng = random.Random(_fault_seed())
    out = tmp_path / "run"
    # The same command each time, as a scheduler or torchrun resubmits it: it resumes from last.pt, or starts
    # again when the kill came before the first checkpoint was complete.
    args = [*RUN, "--data", str(tiny_cifar), "--out", str(out), "--resume-if-exists"]
    kills = 0
    for _ in range(3):
        proc = _train(*args)
        # Somewhere after the k-th logged step, often in the middle of a checkpoint write (one per step).
        if _wait_for(proc, out, rng.randint(_lines(out) + 1, _lines(out) + 6)):
            time.sleep(rng.uniform(0, 0.15))
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=300)
        if (out / "last.pt").exists():
            load_checkpoint(out / "last.pt")  # a torn write never replaces last.pt
    proc = _train(*args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert kills >= 1
    assert same_weights(out / "last.pt", straight / "last.pt")
    assert without_speed(metrics(out)) == without_speed(metrics(straight))
    assert json.loads((out / "summary.json").read_text())["final_val_error"] == \
        json.loads((straight / "summary.json").read_text())["final_val_error"]


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_the_last_step_says_how_to_resume_and_exits_nonzero(sig, code, straight, tiny_cifar, tmp_path):
    out = tmp_path / "run"
    proc = _train(*RUN, "--save-every", "0", "--data", str(tiny_cifar), "--out", str(out))
    assert _wait_for(proc, out, 3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert f"Resume with: resnetlab train --resume {out}" in err
    assert "Traceback" not in err
    step = load_checkpoint(out / "last.pt")["state"]["step"]
    assert step >= 3  # saved where it stopped, not at the last evaluation (none yet at step 3)
    proc = _train("--resume", str(out))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert same_weights(out / "last.pt", straight / "last.pt")
    assert without_speed(metrics(out)) == without_speed(metrics(straight))


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_last_pt_is_named_and_nothing_else_is_touched(damage, tiny_cifar, tmp_path, capsys):
    from resnetlab.cli.main import main

    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(out), "--iters", "8", "--stop-after", "4"]) == 0
    last = out / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2] if damage == "truncated" else os.urandom(len(data)))
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(last) in err and "damaged" in err and "weights_only" not in err and "Traceback" not in err
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir() if p.is_file()}
    assert after == before


def _torchrun(report: Path, *args: str, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
           str(REPO / "tests" / "ddp_probe.py"), str(report), *args]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _ranks(report: Path) -> list[dict]:
    return [json.loads(Path(f"{report}.rank{r}").read_text()) for r in (0, 1)]


def test_torchrun_killed_and_resumed_both_ranks_agree_and_warmup_switches_together(tiny_cifar, tmp_path):
    """Rank 1 counts every prediction wrong, rank 0 none: the warm-up bar (80%) lies between their local
    errors, so deciding it locally would give the ranks different learning rates."""
    rng = random.Random(_fault_seed())
    out = tmp_path / "ddp"
    args = [*TINY, "--data", str(tiny_cifar), "--out", str(out), "--iters", "16", "--save-every", "2",
            "--warmup", "on", "--skew-errors"]
    proc = _torchrun(tmp_path / "first", *args, "--stop-after", "4", port=29531)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    r0, r1 = _ranks(tmp_path / "first")
    assert r0["log_points"] == r1["log_points"]
    assert r0["log_points"][0] == [2, 0.01, True]  # both leave the warm-up at the first log point

    proc = _torchrun(tmp_path / "killed", "--resume", str(out), "--skew-errors", port=29532)
    if _wait_for(proc, out, rng.randint(3, 6), timeout=180):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=120)
    saved = load_checkpoint(out / "last.pt")["state"]["step"]
    proc = _torchrun(tmp_path / "resumed", "--resume", str(out), "--skew-errors", port=29533)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    r0, r1 = _ranks(tmp_path / "resumed")
    assert r0["begin"] == r1["begin"] and r0["begin"]["step"] == saved
    assert r0["end"] == r1["end"] and r0["end"]["step"] == 16
    assert r0["log_points"] == r1["log_points"]
    lines = metrics(out)
    assert [r["iteration"] for r in lines] == list(range(2, 17, 2))  # no line lost, none twice
    assert all(r["train_error"] == pytest.approx(0.5) for r in lines)  # reduced over ranks, not rank 0's


def test_torchrun_ranks_take_one_plateau_decision(tiny_cifar, tmp_path):
    """Rank 0's validation error improves at every evaluation, rank 1's stalls: deciding the plateau locally
    would divide rank 1's lr alone. Every rank follows rank 0's evaluation."""
    out = tmp_path / "ddp"
    proc = _torchrun(tmp_path / "plateau", *TINY, "--data", str(tiny_cifar), "--out", str(out), "--iters", "8",
                     "--schedule", "plateau", "--plateau-patience", "1", "--eval-every", "2", "--skew-evals",
                     port=29534)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    r0, r1 = _ranks(tmp_path / "plateau")
    assert r0["log_points"] == r1["log_points"]
    assert {lr for _, lr, _ in r1["log_points"]} == {0.1}  # rank 0's error kept improving: no division
