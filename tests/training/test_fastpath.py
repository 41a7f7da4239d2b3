"""The fast path: the compiled step computes what the eager one does, and `--fast auto` chooses by what was
measured (no timing here: speed is for `resnetlab bench`)."""

import dataclasses
import json

import pytest
import torch

from resnetlab.cli.main import main
from resnetlab.training import fastcheck, fastpath, seed_configs
from resnetlab.training.config import resolve
from resnetlab.training.loop import prepare
from resnetlab.training.step import TrainingStep
from tests.clitools import TINY


def _stack(tiny_cifar, out, fast, seeds=1):
    cfg = resolve("cifar-paper", {}, {"model": "cifar_resnet8", "data": str(tiny_cifar), "out": str(out),
                                      "batch_size": 32, "fast": fast, "amp": "off", "val": "none", "iters": 100})
    runs, train_step = prepare(seed_configs(cfg, seeds) if seeds > 1 else [cfg])
    train_step.net.train()
    return runs, train_step


def _steps(runs, train_step, lrs_per_step):
    for i, lr in enumerate(lrs_per_step):
        train_step([r.data.train.batch(i) for r in runs], [lr] * len(runs))
    train_step.sync()
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
    torch._dynamo.utils.counters.clear()  # the step compiles in prepare (its self-check) or at the first step
    runs, train_step = _stack(tiny_cifar, tmp_path / "fast", "on", seeds)
    assert train_step.path.compiled
    compiled = _steps(runs, train_step, lrs)
    frames = sum(torch._dynamo.utils.counters["frames"].values())
    assert frames > 0
    torch._dynamo.utils.counters.clear()
    runs_again, stack_again = runs, train_step
    _ = stack_again([r.data.train.batch(2) for r in runs_again], [0.001] * seeds)
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
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    long_run, short_run = resolve("cifar-paper", {}, {}), resolve("cifar-paper", {}, {"iters": 500})
    assert fastpath.choose(long_run, cpu).compiled
    assert "too few" in fastpath.choose(short_run, cpu).why and not fastpath.choose(short_run, cpu).compiled
    assert not fastpath.choose(long_run, cuda).compiled and "not been measured" in fastpath.choose(long_run, cuda).why
    assert fastpath.choose(resolve("cifar-paper", {}, {"iters": 500, "fast": "on"}), cuda).compiled
    assert not fastpath.choose(resolve("cifar-paper", {}, {"fast": "off"}), cpu).compiled
    assert not fastpath.choose(resolve("cifar-paper", {}, {"compile": "off"}), cpu).compiled
    assert fastpath.choose(long_run, cuda).amp == torch.bfloat16
    imagenet = fastpath.choose(resolve("finetune", {}, {"model": "resnet18", "iters": 4000,
                                                       "normalization": "imagenet"}), cpu)
    assert not imagenet.compiled and "measured no faster compiled" in imagenet.why  # ImageNet's sizes: eager
    assert fastpath.choose(resolve("finetune", {}, {"model": "resnet18", "iters": 4000, "fast": "on",
                                                    "normalization": "imagenet"}), cpu).compiled
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


def test_native_bf16_is_what_torch_reports_and_old_gpus_get_fp16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not fastpath.cpu_has_native_bf16()  # plain AVX-512 (or AVX2) only emulates bf16
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert fastpath.cpu_has_native_bf16()
    cfg, cuda = resolve("cifar-paper", {}, {}), torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))  # a V100
    assert fastpath.choose(cfg, cuda).amp == torch.float16 and "loss scale" in fastpath.choose(cfg, cuda).why
    assert fastpath.choose(cfg, cuda, runs=3).amp is None  # one loss scale cannot serve runs trained together
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert fastpath.choose(cfg, cuda).amp == torch.bfloat16


def test_fallbacks_go_from_fastest_to_the_reference_and_keep_what_the_user_asked():
    auto = resolve("cifar-paper", {}, {})
    compiled_bf16 = fastpath.FastPath("default", torch.bfloat16, "")
    assert [p.name for p in fastpath.fallbacks(auto, compiled_bf16)] == [
        "compiled bf16", "eager bf16", "compiled fp32", "eager fp32"]
    forced = resolve("cifar-paper", {}, {"fast": "on", "amp": "bf16"})
    assert [p.name for p in fastpath.fallbacks(forced, compiled_bf16)] == ["compiled bf16"]
    assert [p.name for p in fastpath.fallbacks(resolve("cifar-paper", {}, {"fast": "on"}), compiled_bf16)] == [
        "compiled bf16", "compiled fp32"]


@pytest.fixture
def fresh_verdicts(tmp_path, monkeypatch):
    path = tmp_path / "verdicts.json"
    monkeypatch.setattr(fastcheck, "verdicts_path", lambda: path)
    return path


def _poison_bf16(monkeypatch):
    """A step that is broken in bf16 on 'this machine', as the compiled bf16 step is on Intel CPUs with AMX."""
    real = TrainingStep.sgd_step

    def step(self, x, y):
        losses, errors = real(self, x, y)
        if self.amp_dtype == torch.bfloat16:
            for _, p in self.momenta():
                p.grad.fill_(float("nan"))
        return losses, errors

    monkeypatch.setattr(TrainingStep, "sgd_step", step)


def test_a_step_that_fails_the_self_check_gives_way_to_the_next_path(tiny_cifar, tmp_path, monkeypatch, capsys,
                                                                    fresh_verdicts):
    monkeypatch.setattr(fastpath, "cpu_has_native_bf16", lambda: True)
    _poison_bf16(monkeypatch)
    out = tmp_path / "run"

    def args(out):
        return ["train", *TINY, "--data", str(tiny_cifar), "--out", str(out), "--iters", "4"]

    assert main(args(out)) == 0
    text = capsys.readouterr().out
    assert "self-check: eager bf16 rejected: its loss or gradients are not finite" in text
    assert "fast path: eager fp32, as bf16 was rejected" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["precision"] == "fp32" and summary["mode"] == "eager"
    assert json.loads((out / "config.json").read_text())["fast_path"]["precision"] == "fp32"
    verdicts = json.loads(fresh_verdicts.read_text())
    assert [v["ok"] for v in verdicts.values()] == [False] and "cifar_resnet8" in next(iter(verdicts))
    # The next run on this machine trusts the verdict: no step is probed.
    probed = []
    monkeypatch.setattr(fastcheck.Probe, "run", lambda self: probed.append(1))
    assert main(args(tmp_path / "again")) == 0
    assert probed == [] and "rejected on this machine earlier" in capsys.readouterr().out


def test_a_healthy_path_is_accepted_and_training_starts_from_the_untouched_state(tiny_cifar, tmp_path, monkeypatch,
                                                                                 fresh_verdicts):
    """The probe steps are undone: a run whose bf16 path was checked trains exactly as one whose verdict was cached."""
    monkeypatch.setattr(fastpath, "cpu_has_native_bf16", lambda: True)
    cfg = resolve("cifar-paper", {}, {"model": "cifar_resnet8", "data": str(tiny_cifar), "batch_size": 32,
                                      "val": "none", "iters": 100})

    def trained(out):
        runs, train_step = prepare([dataclasses.replace(cfg, out=str(out))])
        assert train_step.path.name == "eager bf16"
        return _steps(runs, train_step, [0.1, 0.1])[0]

    checked = trained(tmp_path / "checked")
    assert json.loads(fresh_verdicts.read_text()) and all(v["ok"] for v in json.loads(fresh_verdicts.read_text()).values())
    cached = trained(tmp_path / "cached")
    assert all(torch.equal(checked[k], cached[k]) for k in checked)


def test_a_resumed_run_keeps_its_precision_or_says_the_change(tiny_cifar, tmp_path, monkeypatch, capsys, fresh_verdicts):
    monkeypatch.setattr(fastpath, "cpu_has_native_bf16", lambda: True)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(out), "--iters", "6", "--stop-after", "3"]) == 0
    monkeypatch.setattr(fastpath, "cpu_has_native_bf16", lambda: False)  # resumed on a CPU without native bf16
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 0
    assert "it continues eager fp32" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["precision"] == "bf16/fp32"
    assert [(p["from_iteration"], p["precision"]) for p in summary["fast_paths"]] == [(0, "bf16"), (3, "fp32")]


def test_a_resumed_fp32_run_stays_fp32_where_bf16_would_be_chosen(tiny_cifar, tmp_path, monkeypatch, capsys,
                                                                 fresh_verdicts):
    monkeypatch.setattr(fastpath, "cpu_has_native_bf16", lambda: False)
    out = tmp_path / "run"
    main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(out), "--iters", "6", "--stop-after", "3"])
    monkeypatch.setattr(fastpath, "cpu_has_native_bf16", lambda: True)
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 0
    assert "fp32 (the precision this run trained in so far)" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["precision"] == "fp32"


@pytest.mark.skipif(not fastpath.cpu_has_native_bf16(), reason="this CPU has no native bf16 (AVX-512 BF16 or AMX): "
                    "resnetlab never compiles bf16 steps here")
def test_compiled_bf16_trains_like_eager_bf16_on_this_cpu(tiny_cifar, tmp_path):
    """Where the fast path would run compiled bf16, a few steps of it follow eager bf16 (the Intel AMX defect
    made them NaN at the second step)."""
    cfg = resolve("cifar-paper", {}, {"model": "cifar_resnet8", "data": str(tiny_cifar), "batch_size": 32,
                                      "val": "none", "iters": 100, "amp": "bf16"})
    losses = {}
    for fast in ("off", "on"):
        runs, train_step = prepare([dataclasses.replace(cfg, out=str(tmp_path / fast), fast=fast)])
        assert train_step.path.name == ("compiled" if fast == "on" else "eager") + " bf16"
        losses[fast] = torch.stack([train_step([runs[0].data.train.batch(i)], [0.1])[0][0] for i in range(5)])
        runs[0].run_dir.release()
    assert torch.isfinite(losses["on"]).all()
    assert torch.allclose(losses["on"], losses["off"], rtol=0.03), losses


def test_a_step_that_crashes_on_this_machine_is_a_rejection_not_a_crash(tiny_cifar, tmp_path, monkeypatch, capsys,
                                                                       fresh_verdicts):
    monkeypatch.setattr(fastpath, "cpu_has_native_bf16", lambda: True)
    real = TrainingStep.sgd_step

    def step(self, x, y):
        if self.amp_dtype == torch.bfloat16:
            raise RuntimeError("a compiler that fails here")
        return real(self, x, y)

    monkeypatch.setattr(TrainingStep, "sgd_step", step)
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(tmp_path / "r"), "--iters", "4"]) == 0
    assert "eager bf16 rejected: it failed: RuntimeError: a compiler that fails here" in capsys.readouterr().out
