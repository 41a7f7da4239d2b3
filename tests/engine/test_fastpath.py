"""The fast path: the compiled step computes what the eager one does, and `--fast auto` chooses by what was
measured (no timing here: speed is for `resnetlab bench`)."""

import json

import pytest
import torch

from resnetlab.cli.main import main
from resnetlab.engine import fastpath
from resnetlab.engine.config import resolve
from resnetlab.engine.trainer import prepare, seed_configs
from tests.clitools import TINY


def _stack(tiny_cifar, out, fast, seeds=1):
    cfg = resolve("cifar-paper", {}, {"model": "cifar_resnet8", "data": str(tiny_cifar), "out": str(out),
                                      "batch_size": 32, "fast": fast, "amp": "off", "val": "none", "iters": 100})
    runs, stack = prepare(seed_configs(cfg, seeds) if seeds > 1 else [cfg])
    stack.net.train()
    return runs, stack


def _steps(runs, stack, lrs_per_step):
    for i, lr in enumerate(lrs_per_step):
        stack.step([r.data.train.batch(i) for r in runs], [lr] * len(runs))
    stack.sync()
    for r in runs:
        r.run_dir.release()
    return [{k: v.clone() for k, v in r.model.state_dict().items()} for r in runs]


@pytest.mark.parametrize("seeds", [1, 2])
def test_the_compiled_step_computes_the_eager_step(seeds, tiny_cifar, tmp_path):
    """Two steps, the lr divided by 10 after the first (a milestone): the compiled and the eager step give
    the same weights to float precision (inductor fuses and reorders additions; at lr
    0.1 early training amplifies such differences tenfold per step, so more steps compare chaos), and the
    lr change is read from the lr tensor, so another lr compiles nothing."""
    lrs = [0.1, 0.01]
    eager = _steps(*_stack(tiny_cifar, tmp_path / "eager", "off", seeds), lrs)
    runs, stack = _stack(tiny_cifar, tmp_path / "fast", "on", seeds)
    assert stack.path.compiled
    torch._dynamo.utils.counters.clear()
    compiled = _steps(runs, stack, lrs)
    frames = sum(torch._dynamo.utils.counters["frames"].values())
    assert frames > 0
    torch._dynamo.utils.counters.clear()
    runs_again, stack_again = runs, stack
    _ = stack_again.step([r.data.train.batch(2) for r in runs_again], [0.001] * seeds)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 0  # another lr: no new graph
    for e, c in zip(eager, compiled):
        assert e.keys() == c.keys()
        # relative to the tensor's scale where that exceeds 1 (BN running variances): 1e-4 when written
        worst = max((e[k] - c[k]).abs().max().item() / max(1.0, e[k].abs().max().item())
                    for k in e if e[k].is_floating_point())
        assert worst < 2e-4, worst
        assert any(not torch.equal(e[k], c[k]) or k.endswith("tracked") for k in e)  # both trained, not copies


def test_auto_compiles_long_cpu_runs_and_keeps_cuda_eager_until_measured(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    long_run, short_run = resolve("cifar-paper", {}, {}), resolve("cifar-paper", {}, {"iters": 500})
    assert fastpath.choose(long_run, cpu).compiled
    assert "too few" in fastpath.choose(short_run, cpu).why and not fastpath.choose(short_run, cpu).compiled
    assert not fastpath.choose(long_run, cuda).compiled and "not been measured" in fastpath.choose(long_run, cuda).why
    assert fastpath.choose(resolve("cifar-paper", {}, {"iters": 500, "fast": "on"}), cuda).compiled
    assert not fastpath.choose(resolve("cifar-paper", {}, {"fast": "off"}), cpu).compiled
    assert not fastpath.choose(resolve("cifar-paper", {}, {"compile": "off"}), cpu).compiled
    assert fastpath.choose(long_run, cuda).amp == torch.bfloat16
    monkeypatch.setattr(fastpath, "cpu_has_native_bf16", lambda: True)
    assert fastpath.choose(long_run, cpu).amp == torch.bfloat16
    monkeypatch.setattr(fastpath, "cpu_has_native_bf16", lambda: False)
    assert fastpath.choose(long_run, cpu).amp is None and "no native bf16" in fastpath.choose(long_run, cpu).why
    assert fastpath.choose(resolve("cifar-paper", {}, {"amp": "bf16"}), cpu).amp == torch.bfloat16
    monkeypatch.setattr(fastpath.shutil, "which", lambda name: None)
    assert not fastpath.choose(long_run, cpu).compiled and "C++ compiler" in fastpath.choose(long_run, cpu).why


def test_a_compiled_run_says_what_it_chose_and_counts_compile_time_apart(tiny_cifar, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(out), "--iters", "4", "--fast", "on",
                 "--amp", "off"]) == 0
    text = capsys.readouterr()
    assert "fast path: the whole step compiled" in text.out and "compiled in" in text.err + text.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["compile_seconds"] > 0
