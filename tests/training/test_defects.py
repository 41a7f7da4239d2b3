"""One test per defect of the correctness review (issue 9): each failed before its fix."""

import json

import torch

from resnetlab.cli.main import main
from resnetlab.runtime import distributed
from resnetlab.runtime.checkpoint import load_checkpoint
from resnetlab.training import batches as batches_module
from resnetlab.training import run as run_module
from resnetlab.training.config import resolve
from tests.clitools import TINY, metrics, refused, run_held_by_another_process, same_weights, without_speed


def _train(tiny_cifar, out, *extra):
    return main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(out), *extra])


def test_other_ranks_open_the_data_only_after_the_first_rank_of_the_node(tiny_cifar, monkeypatch):
    """Rank 0 of a node downloads/extracts/decodes; the others wait at a barrier, then open the result."""
    events = []
    monkeypatch.setattr(distributed, "barrier", lambda info: events.append(f"barrier{info.rank}"))
    real_open = batches_module.open_dataset
    monkeypatch.setattr(batches_module, "open_dataset", lambda *a, **kw: events.append("open") or real_open(*a, **kw))
    cfg = resolve("cifar-paper", {}, {"model": "cifar_resnet8", "data": str(tiny_cifar), "batch_size": 32})
    for rank in (0, 1):
        batches_module.Data(cfg, torch.device("cpu"), distributed.DistInfo(rank, 2, rank), False)
    assert events == ["open", "barrier0", "barrier1", "open"]


def test_without_validation_there_is_no_best_checkpoint(tiny_cifar, tmp_path):
    out = tmp_path / "run"
    assert _train(tiny_cifar, out, "--iters", "8", "--val", "none") == 0
    assert (out / "last.pt").is_file() and not (out / "best.pt").exists()
    assert json.loads((out / "summary.json").read_text())["best_val_error"] is None


def test_best_checkpoint_says_which_split_chose_it_and_lines_name_the_split(tiny_cifar, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_cifar, out, "--iters", "8") == 0  # the tiny CIFAR folder has a test split
    text = capsys.readouterr()
    assert "test loss" in text.err + text.out and "val loss" not in text.err + text.out
    assert "test error" in text.out and "at the final iteration" in text.out
    best = load_checkpoint(out / "best.pt")["best"]
    assert best["chosen_on"] == "test" and best["iteration"] in (4, 8)
    assert json.loads((out / "summary.json").read_text())["best_chosen_on"] == "test"
    assert main(["evaluate", "--checkpoint", str(out / "best.pt"), "--data", str(tiny_cifar)]) == 0
    assert "optimistic" in capsys.readouterr().out


def test_zero_init_residual_is_refused_on_plain_nets_and_trains_a_resnet(tiny_cifar, tmp_path, capsys):
    refused(["train", *TINY, "--model", "cifar_plain8", "--zero-init-residual", "--data", str(tiny_cifar),
             "--out", str(tmp_path / "plain")], "zero_init_residual needs shortcuts", capsys)
    assert not (tmp_path / "plain").exists()
    out = tmp_path / "res"
    assert _train(tiny_cifar, out, "--iters", "8", "--zero-init-residual") == 0
    bn = load_checkpoint(out / "last.pt")["model"]["layer1.0.bn2.weight"]
    assert bn.abs().max() > 0  # started at zero, moved by training
    losses = [r["train_loss"] for r in metrics(out)]
    assert losses[-1] < losses[0]


def test_fp16_is_refused_for_runs_trained_together(tiny_cifar, tmp_path, capsys):
    refused(["train", *TINY, "--data", str(tiny_cifar), "--out", str(tmp_path / "x"), "--seeds", "2",
             "--amp", "fp16"], "--amp fp16 is not supported for runs trained together", capsys)


def test_reproduce_refuses_runs_of_another_length(tiny_cifar, tmp_path, capsys):
    base = ["reproduce", "cifar", "--out", str(tmp_path / "rep"), "--depths", "8", "--nets", "resnet",
            "--data", str(tiny_cifar), "--device", "cpu", "--together", "off"]
    assert main([*base, "--iters", "4"]) == 0
    capsys.readouterr()
    err = refused([*base, "--iters", "8"], "holds a run of 4 iterations", capsys)
    assert str(tmp_path / "rep" / "runs" / "cifar_resnet8-seed0") in err
    assert main([*base, "--iters", "4"]) == 0  # the same request again: read back, not retrained


def test_reproduce_extends_an_unfinished_run_to_a_longer_schedule(tiny_cifar, tmp_path):
    from resnetlab.experiments.runs import reconcile

    out = tmp_path / "run"
    assert _train(tiny_cifar, out, "--iters", "8", "--stop-after", "2") == 0
    from resnetlab.training import load_run_config

    asked = resolve("cifar-paper", {}, {"model": "cifar_resnet8", "data": str(tiny_cifar), "iters": 16,
                                        "batch_size": 32, "lr": 0.1, "out": str(out)})
    assert reconcile(load_run_config(out), asked, 2, out).milestones == [8, 12]


def test_resume_with_more_iterations_follows_the_fresh_schedule(tiny_cifar, tmp_path, capsys):
    fresh, extended = tmp_path / "fresh", tmp_path / "extended"
    assert _train(tiny_cifar, fresh, "--iters", "16") == 0
    assert _train(tiny_cifar, extended, "--iters", "8", "--stop-after", "3") == 0  # milestones 4, 6: none passed
    capsys.readouterr()
    assert main(["train", "--resume", str(extended), "--iters", "16"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "16 iterations of batch 32, lr 0.1 divided by 10 at iterations 8, 12" in out
    assert load_checkpoint(extended / "last.pt")["config"]["milestones"] == [8, 12]
    assert same_weights(fresh / "last.pt", extended / "last.pt")

    past = tmp_path / "past"
    assert _train(tiny_cifar, past, "--iters", "8", "--stop-after", "5") == 0  # past the milestone at 4
    refused(["train", "--resume", str(past), "--iters", "16"], "give the milestones explicitly", capsys)
    assert main(["train", "--resume", str(past), "--iters", "16", "--milestones", "4,6"]) == 0


def test_ctrl_c_during_an_evaluation_resumes_to_the_uninterrupted_end(tiny_cifar, tmp_path, monkeypatch):
    straight, out = tmp_path / "straight", tmp_path / "run"
    assert _train(tiny_cifar, straight, "--iters", "12") == 0
    real = run_module.evaluate
    calls = {"n": 0}

    def interrupted(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the evaluation at iteration 8
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(run_module, "evaluate", interrupted)
    assert _train(tiny_cifar, out, "--iters", "12") == 130
    monkeypatch.setattr(run_module, "evaluate", real)
    assert main(["train", "--resume", str(out)]) == 0
    assert without_speed(metrics(out)) == without_speed(metrics(straight))
    assert same_weights(out / "best.pt", straight / "best.pt")
    assert same_weights(out / "last.pt", straight / "last.pt")
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (out, straight))
    assert s1["final_val_error"] == s2["final_val_error"] and s1["best_val_error"] == s2["best_val_error"]


def test_a_second_process_on_the_same_run_folder_is_refused(tiny_cifar, tmp_path, capsys):
    out = tmp_path / "run"
    with run_held_by_another_process(out) as holder:
        err = refused(["train", *TINY, "--data", str(tiny_cifar), "--out", str(out), "--iters", "2"], "is in use by", capsys)
        assert f"process {holder.pid}" in err
    assert _train(tiny_cifar, out, "--iters", "2") == 0  # free again once the holder is gone


def test_a_folder_that_is_not_a_run_is_never_written_into(tiny_cifar, tmp_path, capsys):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    refused(["train", *TINY, "--data", str(tiny_cifar), "--out", str(mine)], "is not a resnetlab run", capsys)
    assert [p.name for p in mine.iterdir()] == ["chapter1.tex"]


def test_a_restart_in_a_run_folder_without_checkpoint_starts_clean(tiny_cifar, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".resnetlab-run").write_text("")  # a start writes its mark first (without it: a user's files, kept)
    (out / "config.json").write_text("{}")
    (out / "metrics.jsonl").write_text('{"iteration": 2, "train_loss": 9}\n')
    assert _train(tiny_cifar, out, "--iters", "4") == 0
    assert [r["iteration"] for r in metrics(out)] == [2, 4] and metrics(out)[0]["train_loss"] != 9


def test_a_restart_after_a_kill_during_the_first_checkpoint_write_starts_clean(tiny_cifar, tmp_path):
    """SIGKILL inside atomic_write leaves its temporary file (no last.pt yet): a restart (the same command, or
    torchrun's --resume-if-exists) must not take that orphan for someone else's file and refuse the folder."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".resnetlab-run").write_text("")
    (out / "config.json").write_text("{}")
    (out / "metrics.jsonl").write_text('{"iteration": 2, "train_loss": 9}\n')
    (out / ".last.pt.k3j9x_2a.tmp.pt").write_bytes(b"PK\x03\x04 torn")
    (out / ".write-test.q8z1m0").write_bytes(b"")
    assert _train(tiny_cifar, out, "--iters", "8", "--stop-after", "4", "--resume-if-exists") == 0
    assert [r["iteration"] for r in metrics(out)] == [2, 4] and metrics(out)[0]["train_loss"] != 9
    assert not list(out.glob(".last.pt.*.tmp.pt")) and not list(out.glob(".write-test.*"))  # cleared
    orphan = out / ".best.pt.a1b2c3d4.tmp.pt"
    orphan.write_bytes(b"torn")
    assert _train(tiny_cifar, out, "--iters", "8", "--resume-if-exists") == 0  # a resumed run clears them too
    assert not orphan.exists() and (out / "best.pt").is_file()


def test_an_exploding_loss_stops_the_run_naming_a_checkpoint_that_exists(tiny_cifar, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_cifar, out, "--iters", "200", "--lr", "10", "--log-every", "1", "--save-every", "1",
                  "--eval-every", "100") == 3
    text = capsys.readouterr().out
    assert "exploded" in text or "became nan" in text or "became inf" in text
    assert f"the last good checkpoint is {out / 'last.pt'}" in text
    good = load_checkpoint(out / "last.pt")
    assert good["state"]["step"] < 200
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())


def test_nan_before_the_first_checkpoint_does_not_name_a_missing_file(tiny_cifar, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.nn.functional, "cross_entropy",
                        lambda logits, y, **kw: logits.sum() * torch.full(y.shape, float("nan")))
    out = tmp_path / "run"
    assert _train(tiny_cifar, out, "--iters", "8") == 3
    text = capsys.readouterr().out
    assert "no checkpoint was written" in text and "last.pt" not in text
