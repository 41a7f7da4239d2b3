import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnetlab.cli.main import main
from resnetlab.data import DeviceLoader
from resnetlab.runtime import checkpoint as ckpt_module
from resnetlab.runtime.checkpoint import load_checkpoint

TINY = ["--model", "cifar_resnet8", "--batch-size", "32", "--log-every", "2", "--eval-every", "4", "--workers", "0"]


def _state(run_dir):
    return load_checkpoint(run_dir / "last.pt")["model"]


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_after_stop_equals_straight_run(tiny_cifar, tmp_path):
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(tmp_path / "straight"), "--iters", "8"]) == 0
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(tmp_path / "split"), "--iters", "8",
                 "--stop-after", "3"]) == 0
    assert load_checkpoint(tmp_path / "split" / "last.pt")["state"]["step"] == 3
    assert main(["train", "--resume", str(tmp_path / "split")]) == 0
    _assert_same(_state(tmp_path / "straight"), _state(tmp_path / "split"))
    summary = json.loads((tmp_path / "split" / "summary.json").read_text())
    assert summary["finished"] and summary["iterations"] == 8


def test_ctrl_c_and_a_crash_during_checkpoint_write_lose_nothing(tiny_cifar, tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = ["train", *TINY, "--data", str(tiny_cifar), "--iters", "8", "--save-every", "2"]
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0

    # A crash while last.pt is being written at step 4: the checkpoint of step 2 must survive intact.
    real_save = torch.save
    calls = {"n": 0}

    def dying_save(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            with open(f, "wb") as fh:
                fh.write(b"half a checkpo")
            raise SystemExit(137)  # as if killed mid-write: no handler of ours runs
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(ckpt_module.torch, "save", dying_save)
    with pytest.raises(SystemExit):
        main([*args, "--out", str(out)])
    monkeypatch.setattr(ckpt_module.torch, "save", real_save)
    assert load_checkpoint(out / "last.pt")["state"]["step"] == 2
    assert not list(out.glob(".*.tmp*"))

    # Ctrl-C between steps at step 5: the run saves where it is.
    real_batch = DeviceLoader.batch

    def interrupted(self, step):
        if step == 5:
            raise KeyboardInterrupt
        return real_batch(self, step)

    monkeypatch.setattr(DeviceLoader, "batch", interrupted)
    assert main(["train", "--resume", str(out)]) == 130
    assert load_checkpoint(out / "last.pt")["state"]["step"] == 5
    monkeypatch.setattr(DeviceLoader, "batch", real_batch)
    assert main(["train", "--resume", str(out)]) == 0
    _assert_same(_state(tmp_path / "straight"), _state(out))


def test_non_finite_loss_stops_with_last_good_checkpoint(tiny_cifar, tmp_path, monkeypatch, capsys):
    real_ce = torch.nn.functional.cross_entropy
    calls = {"n": 0}

    def poisoned(logits, y, **kw):
        if kw.get("reduction") == "sum":  # the evaluation's call, not the training step's
            return real_ce(logits, y, **kw)
        calls["n"] += 1
        loss = real_ce(logits, y, **kw)
        return loss * float("nan") if calls["n"] >= 5 else loss

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", poisoned)
    out = tmp_path / "run"
    rc = main(["train", *TINY, "--data", str(tiny_cifar), "--iters", "8", "--save-every", "2", "--out", str(out)])
    assert rc == 3
    assert "training loss became nan by iteration 6" in capsys.readouterr().out
    good = load_checkpoint(out / "last.pt")
    assert good["state"]["step"] == 4
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("argv,message", [
    (["--model", "cifar_resnet2O"], "did you mean"),
    (["--data", "/no/such/data"], "no such file or folder"),
    (["--iters", "0"], "--iters must be a positive"),
    (["--lr", "-1"], "--lr must be in"),
    (["--recipe", "fast"], "--recipe 'fast' is not one of"),
    (["--amp", "fp8"], "invalid choice"),
    (["--config", "/no/such.toml"], "no such file"),
])
def test_user_errors_are_one_line_exit_2(argv, message, tiny_cifar, tmp_path, capsys):
    base = {"--data": str(tiny_cifar), "--out": str(tmp_path / "r"), "--model": "cifar_resnet8"}
    for i in range(0, len(argv), 2):
        base[argv[i]] = argv[i + 1]
    flat = [x for kv in base.items() for x in kv]
    assert main(["train", *flat]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_checkpoint_of_another_network_and_unwritable_out(tiny_cifar, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--iters", "2", "--out", str(out)]) == 0
    assert main(["evaluate", "--model", "cifar_resnet20", "--weights", str(out / "last.pt"), "--data", str(tiny_cifar)]) == 2
    assert "does not fit this network" in capsys.readouterr().err
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--iters", "2", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(locked / "x")]) == 2
    (tmp_path / "file").write_text("")
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(tmp_path / "file" / "x")]) == 2
    assert "cannot write there" in capsys.readouterr().err


def test_tensorboard_event_files_hold_the_logged_metrics(tiny_cifar, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(out), "--iters", "4", "--tensorboard"]) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train_loss", "train_error", "val_error", "lr"} <= set(tags)
    assert [e.step for e in events.Scalars("train_loss")] == [2, 4]
    assert [e.step for e in events.Scalars("val_error")] == [4]


def test_toml_config_and_flags_override_the_recipe(tiny_cifar, tmp_path):
    from resnetlab.training.config import read_toml, resolve

    (tmp_path / "c.toml").write_text('# resnetlab train --config c.toml\nlr = 0.05\niters = 640\nbatch_size = 64\n')
    cfg = resolve("cifar-paper", read_toml(tmp_path / "c.toml"), {"batch_size": 32})
    assert (cfg.lr, cfg.iters, cfg.batch_size, cfg.milestones) == (0.05, 640, 32, [320, 480])
    assert resolve("cifar-paper", {}, {}).milestones == [32000, 48000]
    (tmp_path / "bad.toml").write_text("learning_rate = 1\n")
    with pytest.raises(Exception, match="unknown key 'learning_rate'"):
        read_toml(tmp_path / "bad.toml")


def test_warmup_for_resnet110_until_training_error_below_80_percent():
    from resnetlab.training.config import resolve
    from resnetlab.training.learning_rate import RunState, learning_rate, uses_warmup

    cfg = resolve("cifar-paper", {}, {"model": "cifar_resnet110"})
    assert uses_warmup(cfg) and not uses_warmup(resolve("cifar-paper", {}, {"model": "cifar_resnet56"}))
    assert not uses_warmup(resolve("cifar-paper", {}, {"model": "cifar_plain110"}))  # the paper's is ResNet-110's
    assert uses_warmup(resolve("cifar-paper", {}, {"model": "cifar_resnet1202"}))
    assert learning_rate(cfg, RunState(step=10), True) == 0.01
    assert learning_rate(cfg, RunState(step=10, warm_done=True), True) == 0.1
    assert learning_rate(cfg, RunState(step=32000, warm_done=True), True) == pytest.approx(0.01)
    assert learning_rate(cfg, RunState(step=48000, warm_done=True), True) == pytest.approx(0.001)


@pytest.mark.parametrize("sub", ["models", "data", "train", "evaluate", "predict", "export", "reproduce", "bench"])
def test_every_subcommand_has_help(sub, capsys):
    with pytest.raises(SystemExit) as e:
        main([sub, "--help"])
    assert e.value.code == 0
    assert "usage: resnetlab " + sub in capsys.readouterr().out


@pytest.mark.slow
def test_cifar_resnet20_learns_on_the_real_data(shared_cifar, tmp_path):
    """300 iterations of the paper's recipe (milestones scaled to 150/225) on the 45k split: the
    validation error on the 5k hold-out falls from chance (90%) to below 65% (about 55% when written)."""
    out = tmp_path / "r20"
    assert main(["train", "--model", "cifar_resnet20", "--data", str(shared_cifar), "--out", str(out),
                 "--iters", "300", "--eval-every", "300"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_split"] == "holdout" and summary["final_val_error"] < 0.65
    split = json.loads((out / "split.json").read_text())
    assert split["train_images"] == 45000 and split["val_images"] == 5000


def test_torchrun_two_processes_train_write_once_and_resume(tiny_cifar, tmp_path):
    out = tmp_path / "ddp"
    base = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
            "-m", "resnetlab", "train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run([*base, *TINY, "--data", str(tiny_cifar), "--out", str(out), "--iters", "8",
                            "--stop-after", "4"], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert load_checkpoint(out / "last.pt")["state"]["step"] == 4
    second = subprocess.run([*base, "--resume", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines] == [2, 4, 6, 8]  # one writer: no line twice
    assert json.loads((out / "summary.json").read_text())["iterations"] == 8


def test_plateau_rule_divides_the_lr_after_patience_evaluations_without_improvement():
    from resnetlab.training.config import resolve
    from resnetlab.training.learning_rate import RunState, after_evaluation, learning_rate

    cfg = resolve("imagenet-paper", {}, {"plateau_patience": 2})
    state = RunState()
    improved = [after_evaluation(cfg, state, e) for e in (0.5, 0.4, 0.45, 0.41)]
    assert improved == [True, True, False, False]
    assert state.best_val_error == 0.4 and learning_rate(cfg, state, False) == pytest.approx(0.01)
    assert after_evaluation(cfg, state, 0.42) is False and learning_rate(cfg, state, False) == pytest.approx(0.01)
    assert after_evaluation(cfg, state, 0.43) is False and learning_rate(cfg, state, False) == pytest.approx(0.001)


def test_the_learning_rate_follows_the_batch_unless_given(tiny_cifar, tmp_path, capsys):
    """Issue 19, item 12: kept at 0.1, a batch of 6 on the ImageNet recipe diverged by iteration 3."""
    from resnetlab.cli.main import main
    from resnetlab.training.config import resolve

    cfg = resolve("cifar-paper", {}, {"batch_size": 32})
    assert (cfg.lr, cfg.warmup_lr) == (pytest.approx(0.025), pytest.approx(0.0025))
    assert resolve("imagenet-paper", {}, {"model": "resnet18", "batch_size": 6}).lr == pytest.approx(0.1 * 6 / 256)
    assert resolve("cifar-paper", {}, {"batch_size": 32, "lr": 0.1}).lr == 0.1  # given: taken as it is
    assert resolve("cifar-paper", {"lr": 0.2}, {"batch_size": 32}).lr == 0.2
    assert resolve("cifar-paper", {}, {}).lr == 0.1
    assert main(["train", "--model", "cifar_resnet8", "--data", str(tiny_cifar), "--out", str(tmp_path / "r"),
                 "--iters", "1", "--batch-size", "64", "--workers", "0", "--val", "none"]) == 0
    assert "lr 0.05 (0.1 x 64/128: the recipe's lr scaled with the batch; --lr sets it)" in capsys.readouterr().out


def test_every_setting_is_read_and_belongs_to_a_group():
    """Issue 20, item 6: no dead field (sync_bn was one), each in one TOML table."""
    import ast

    from resnetlab.training.config import FIELDS, GROUPS

    package = Path(__file__).resolve().parents[2] / "src" / "resnetlab"
    read = {node.attr for path in package.rglob("*.py") if path.name != "config.py"
            for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Attribute)}
    from resnetlab.data.batch_transforms import BATCH_TRANSFORMS

    read |= set(BATCH_TRANSFORMS)  # the batch transforms' strengths, read by the registry by name
    assert sorted(set(FIELDS) - read) == []
    grouped = [f for fields in GROUPS.values() for f in fields]
    assert len(grouped) == len(set(grouped)) and set(FIELDS) - set(grouped) == {"model", "data", "recipe", "out"}


def test_config_files_take_tables_and_a_runs_config_json(tiny_cifar, tmp_path, capsys):
    from resnetlab.cli.main import main
    from resnetlab.training.config import from_dict, read_toml

    (tmp_path / "t.toml").write_text('model = "cifar_resnet8"\n[optimizer]\nlr = 0.05\niters = 4\n[system]\nlog_every = 2\n')
    assert read_toml(tmp_path / "t.toml") == {"model": "cifar_resnet8", "lr": 0.05, "iters": 4, "log_every": 2}
    (tmp_path / "bad.toml").write_text("[model]\nlr = 0.05\n")
    with pytest.raises(Exception, match=r"'lr' is not a setting of \[model\]"):
        read_toml(tmp_path / "bad.toml")
    (tmp_path / "odd.toml").write_text("[training]\nlr = 0.05\n")
    with pytest.raises(Exception, match=r"unknown table \[training\]"):
        read_toml(tmp_path / "odd.toml")
    first = tmp_path / "first"
    assert main(["train", "--config", str(tmp_path / "t.toml"), "--data", str(tiny_cifar), "--out", str(first),
                 "--workers", "0", "--val", "none"]) == 0
    second = tmp_path / "second"  # the first run's settings given back, with another folder
    assert main(["train", "--config", str(first / "config.json"), "--out", str(second)]) == 0
    a, b = (json.loads((d / "config.json").read_text()) for d in (first, second))
    assert {k: v for k, v in a.items() if k != "out"} == {k: v for k, v in b.items() if k != "out"}
    # What earlier versions stored still reads: a dead key dropped, a retired value mapped.
    old = {**{k: v for k, v in a.items() if k != "fast_path"}, "sync_bn": False, "channels_last": "auto"}
    assert from_dict(old, "old config.json").channels_last == "on"
    for argv, message in ((["--sync-bn"], "unrecognized arguments"), (["--channels-last", "auto"], "invalid choice")):
        assert main(["train", "--data", str(tiny_cifar), "--out", str(tmp_path / "x"), *argv]) == 2
        assert message in capsys.readouterr().err


def test_evaluation_time_is_recorded_and_unknown_for_older_checkpoints(tiny_cifar, tmp_path):
    from resnetlab.experiments.runs import runs_table

    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(out), "--iters", "8", "--stop-after", "4"]) == 0
    ckpt = load_checkpoint(out / "last.pt", training=True)
    assert ckpt["state"]["eval_seconds"] > 0  # one evaluation at iteration 4, carried by the checkpoint
    assert "of training) |" in runs_table({"run": out})
    del ckpt["state"]["eval_seconds"]  # what a checkpoint of an older resnetlab holds
    ckpt_module.save_checkpoint(out / "last.pt", {k: v for k, v in ckpt.items() if k != "format"})
    assert main(["train", "--resume", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["eval_seconds"] is None  # its earlier evaluations' time is not known
    assert runs_table({"run": out}).splitlines()[-1].endswith("| — |")
