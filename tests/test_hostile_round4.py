"""Hostile and careless input, round 4 (issue 40): each is refused in one line naming what is wrong, or
handled as a user would expect; nothing the user had is lost."""

import pytest
import torch

import resnetlab
from resnetlab.cli.main import main
from resnetlab.models import create_model
from resnetlab.training import run as run_module

FAST = ["--iters", "1", "--device", "cpu", "--fast", "off", "--batch-size", "16"]


@pytest.mark.parametrize("keyword, value", [("out", None), ("data", None), ("model", 5), ("out", "  ")])
def test_train_refuses_a_missing_path_or_name_by_its_keyword(tmp_path, monkeypatch, keyword, value):
    monkeypatch.chdir(tmp_path)
    kwargs = {"model": "cifar_resnet8", "data": str(tmp_path), "out": str(tmp_path / "r"), keyword: value}
    with pytest.raises(ValueError, match=f"train: {keyword} must be"):
        resnetlab.train(**kwargs)
    assert not (tmp_path / "None").exists()


def test_weights_may_be_a_path_as_data_and_out_are(tiny_cifar, tmp_path):
    first = tmp_path / "first"
    resnetlab.train(model="cifar_resnet8", data=tiny_cifar, out=first, iters=1, device="cpu", fast="off",
                    batch_size=16, quiet=True)
    summary = resnetlab.train(model="cifar_resnet8", data=tiny_cifar, out=tmp_path / "second", weights=first / "last.pt",
                              iters=1, device="cpu", fast="off", batch_size=16, quiet=True)
    assert summary["finished"]


def test_huge_shapes_are_refused_before_they_are_allocated(tiny_cifar, tmp_path, capsys):
    with pytest.raises(ValueError, match="beyond the 100,000 classes"):
        create_model("cifar_resnet20", num_classes=10**9)
    state = create_model("cifar_resnet8").state_dict()
    state["fc.weight"] = torch.zeros(1, 64).expand(10**9, 64)  # a 1 MB file that declares 256 GB
    state["fc.bias"] = torch.zeros(1).expand(10**9)
    path = tmp_path / "huge.pt"
    torch.save(state, path)
    assert path.stat().st_size < 2_000_000
    assert main(["train", "--model", "cifar_resnet8", "--weights", str(path), "--data", str(tiny_cifar), "--out",
                 str(tmp_path / "r"), *FAST]) == 2
    assert "beyond the 100,000 classes" in capsys.readouterr().err
    assert main(["train", "--model", "cifar_resnet600002", "--data", str(tiny_cifar), "--out", str(tmp_path / "d"),
                 *FAST]) == 2
    assert "beyond the 5,000 layers" in capsys.readouterr().err


def test_best_pt_is_written_before_last_pt(tiny_cifar, tmp_path, monkeypatch):
    """Issue 40.10: a kill between the two writes must not leave last.pt's record of the best ahead of best.pt."""
    order = []
    real = run_module.RunDir.save

    def spy(self, name, payload):
        order.append(name)
        return real(self, name, payload)

    monkeypatch.setattr(run_module.RunDir, "save", spy)
    assert main(["train", "--model", "cifar_resnet8", "--data", str(tiny_cifar), "--out", str(tmp_path / "r"),
                 "--iters", "2", "--eval-every", "2", "--device", "cpu", "--fast", "off", "--batch-size", "16"]) == 0
    assert order[-2:] == ["best.pt", "last.pt"]


@pytest.mark.parametrize("tensor, value", [("bn1.running_var", float("nan")), ("layer1.0.bn1.running_mean", float("inf"))])
def test_non_finite_weights_are_refused_naming_the_tensor(tiny_cifar, tmp_path, capsys, tensor, value):
    run = tmp_path / "run"
    assert main(["train", "--model", "cifar_resnet8", "--data", str(tiny_cifar), "--out", str(run), *FAST]) == 0
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["model"][tensor].fill_(value)
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    state = tmp_path / "state.pt"
    torch.save(ckpt["model"], state)
    from PIL import Image
    Image.new("RGB", (32, 32)).save(tmp_path / "cat.png")
    for argv in (["train", "--model", "cifar_resnet8", "--weights", str(state), "--data", str(tiny_cifar), "--out",
                  str(tmp_path / "tuned"), "--freeze", "stem", *FAST],
                 ["predict", "--checkpoint", str(bad), str(tmp_path / "cat.png")],
                 ["export", "--checkpoint", str(bad), "--out", str(tmp_path / "x.pt"), "--format", "weights"]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        assert f"{tensor!r} holds NaN or infinite values" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "tuned" / "last.pt").exists()


def test_tensorboard_never_writes_through_a_planted_link(tiny_cifar, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    assert main(["train", "--model", "cifar_resnet8", "--data", str(tiny_cifar), "--out", str(run), "--iters", "2",
                 "--device", "cpu", "--fast", "off", "--batch-size", "16", "--stop-after", "1", "--tensorboard"]) == 0
    elsewhere.mkdir()
    import shutil
    shutil.rmtree(run / "tensorboard")
    (run / "tensorboard").symlink_to(elsewhere)
    assert main(["train", "--resume", str(run)]) == 2
    assert "never through one" in capsys.readouterr().err and not list(elsewhere.iterdir())


def test_transfers_link_tree_never_deletes_through_a_planted_link(tmp_path):
    """Issue 40.13: with OUT/data/vehicles/airplane a link to a user's folder, a second invocation deleted the
    user's files and wrote its links there; a folder where a link goes gave an IsADirectoryError traceback."""
    from resnetlab.errors import UserError
    from resnetlab.experiments.transfer import _link_tree

    source = tmp_path / "source"
    source.mkdir()
    images = [source / f"{i}.png" for i in range(3)]
    for p in images:
        p.write_bytes(b"png")
    target = tmp_path / "out" / "data" / "vehicles"
    _link_tree(target, {"airplane": images})
    assert sorted(p.name for p in (target / "airplane").iterdir()) == ["0.png", "1.png", "2.png"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    for p in (target / "airplane").iterdir():
        p.unlink()
    (target / "airplane").rmdir()
    (target / "airplane").symlink_to(mine)
    with pytest.raises(UserError, match="is a link or a file"):
        _link_tree(target, {"airplane": images})
    assert [p.name for p in mine.iterdir()] == ["thesis.txt"]
    (target / "airplane").unlink()
    (target / "airplane").mkdir()
    (target / "airplane" / "0.png").mkdir()  # a folder where a link goes
    with pytest.raises(UserError, match="not one of the image links"):
        _link_tree(target, {"airplane": images})
    (target / "airplane" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not one of the image links"):
        _link_tree(target, {"airplane": images})
    assert (target / "airplane" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("experiment", ["cifar", "transfer"])
def test_reproduce_out_inside_data_is_refused_before_anything_is_made(tmp_path, capsys, experiment):
    data = tmp_path / "data"
    (data / "train" / "cat").mkdir(parents=True)
    out = data / "train" / "zzz"
    assert main(["reproduce", experiment, "--data", str(data), "--out", str(out), "--iters", "1"]) == 2
    assert "is inside --data" in capsys.readouterr().err and not out.exists()


def test_a_resubmit_takes_the_settings_a_resume_may_change_and_says_so(tiny_cifar, tmp_path, capsys):
    """Issue 40.18: under --resume-if-exists (or a torchrun restart) a new --eval-every or --save-minutes was
    dropped silently, the stored config winning."""
    import json

    out = tmp_path / "r"
    argv = ["train", "--model", "cifar_resnet8", "--data", str(tiny_cifar), "--out", str(out), "--iters", "4",
            "--device", "cpu", "--fast", "off", "--batch-size", "16", "--resume-if-exists"]
    assert main([*argv, "--stop-after", "2"]) == 0
    capsys.readouterr()
    assert main([*argv, "--eval-every", "2", "--save-minutes", "5"]) == 0
    said = capsys.readouterr().out
    assert "continuing with this command line's --eval-every 2 (the run had 1000), --save-minutes 5.0" in said
    config = json.loads((out / "config.json").read_text())
    assert config["eval_every"] == 2 and config["save_minutes"] == 5.0
    assert [m["iteration"] for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if "val_error" in m] == [4]


def test_tracebacks_of_round_4_are_one_line(tiny_cifar, tmp_path, capsys, monkeypatch):
    """Issue 40.22: a checkpoint whose per-pixel mean does not fit its input, a 0-row classifier in --weights,
    RESNETLAB_DIST_TIMEOUT that is no positive number, a damaged summary.json in a reproduction's run folder."""
    from resnetlab.runtime import distributed

    run = tmp_path / "run"
    assert main(["train", "--model", "cifar_resnet8", "--data", str(tiny_cifar), "--out", str(run), *FAST]) == 0
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["normalization"]["mean"] = ckpt["normalization"]["mean"][:, :24, :24].tolist()
    bad = tmp_path / "mean.pt"
    torch.save(ckpt, bad)
    from PIL import Image
    Image.new("RGB", (32, 32)).save(tmp_path / "cat.png")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(bad), str(tmp_path / "cat.png")]) == 2
    assert "mean of the input's size" in capsys.readouterr().err
    state = torch.load(run / "last.pt", weights_only=True)["model"]
    state["fc.weight"], state["fc.bias"] = state["fc.weight"][:0], state["fc.bias"][:0]
    torch.save(state, tmp_path / "empty.pt")
    assert main(["train", "--model", "cifar_resnet8", "--weights", str(tmp_path / "empty.pt"), "--data",
                 str(tiny_cifar), "--out", str(tmp_path / "e"), *FAST]) == 2
    assert "one row per class" in capsys.readouterr().err
    for value in ("abc", "-5", "0", "nan"):
        monkeypatch.setenv("RESNETLAB_DIST_TIMEOUT", value)
        with pytest.raises(ValueError, match="RESNETLAB_DIST_TIMEOUT"):
            distributed.dist_timeout()
    monkeypatch.delenv("RESNETLAB_DIST_TIMEOUT")
    out = tmp_path / "rep"
    argv = ["reproduce", "cifar", "--out", str(out), "--depths", "8", "--nets", "resnet", "--iters", "2",
            "--data", str(tiny_cifar), "--device", "cpu"]
    assert main(argv) == 0
    (out / "runs" / "cifar_resnet8-seed0" / "summary.json").write_bytes(b"\xff\xfe not json")
    assert main(argv) == 0  # resumed at its end, the summary written again


def test_class_names_that_are_not_utf8_are_plotted_and_written(tmp_path, capsys):
    import os

    import numpy as np
    from PIL import Image

    root = tmp_path / "data"
    for k, name in enumerate([b"caf\xe9", b"dog"]):  # Latin-1 bytes: not UTF-8
        folder = os.path.join(os.fsencode(root / "train"), name)
        os.makedirs(folder)
        for i in range(12):
            Image.fromarray(np.full((32, 32, 3), 100 * k, np.uint8)).save(os.path.join(folder, b"%d.png" % i).decode(
                "utf-8", "surrogateescape"))
    run = tmp_path / "run"
    assert main(["train", "--model", "cifar_resnet8", "--data", str(root), "--out", str(run), "--iters", "1",
                 "--device", "cpu", "--fast", "off", "--batch-size", "8"]) == 0
    assert main(["evaluate", "--checkpoint", str(run / "last.pt"), "--data", str(root), "--split", "train",
                 "--plot", str(tmp_path / "c.png"), "--save-predictions", str(tmp_path / "p.csv")]) == 0
    assert (tmp_path / "c.png").is_file() and "caf\ufffd" in (tmp_path / "p.csv").read_text(encoding="utf-8")


def test_misleading_weights_and_head_lr_messages_say_what_is_there(tiny_cifar, tmp_path, capsys):
    """Issue 40.23: --weights a folder, a FIFO or a link loop said "no such file"; --head-lr 1e30 was unbounded."""
    import os

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "folder").mkdir()
    for given, said in (("folder", "a folder, not a weights file"), ("fifo", "not a regular file"),
                        ("loop", "a link that leads nowhere or loops"), ("absent.pt", "no such file")):
        assert main(["train", "--model", "cifar_resnet8", "--weights", str(tmp_path / given), "--data",
                     str(tiny_cifar), "--out", str(tmp_path / "r"), *FAST]) == 2
        assert said in capsys.readouterr().err
    assert main(["train", "--model", "cifar_resnet8", "--head-lr", "1e30", "--data", str(tiny_cifar), "--out",
                 str(tmp_path / "h"), *FAST]) == 2
    assert "--head-lr must be in [0, 10]" in capsys.readouterr().err


def test_a_torchrun_restart_refusal_does_not_name_a_flag_that_was_not_given(tiny_cifar, tmp_path, capsys,
                                                                            monkeypatch):
    out = tmp_path / "r"
    assert main(["train", "--model", "cifar_resnet8", "--data", str(tiny_cifar), "--out", str(out), *FAST]) == 0
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    capsys.readouterr()
    assert main(["train", "--model", "cifar_resnet20", "--data", str(tiny_cifar), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "torchrun restarted the job" in err and "--resume-if-exists:" not in err


def test_api_errors_name_the_keyword():
    """Issue 40.23: get_weights(5) and evaluate(checkpoint=5) failed deep inside; head_lr=nan was a TypeError."""
    with pytest.raises(TypeError, match="get_weights: model and name must be strings"):
        resnetlab.get_weights(5)
    with pytest.raises(TypeError, match="evaluate: checkpoint must be a path"):
        resnetlab.evaluate(checkpoint=5, data="x")
    with pytest.raises(ValueError, match="train: head_lr = nan"):
        resnetlab.train(model="cifar_resnet8", data="x", out="y", head_lr=float("nan"))
